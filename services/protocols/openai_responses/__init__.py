"""The OpenAI Responses API (what Codex CLI speaks), translated to and from Claude.

Used in this order: `request.prepare_responses` (the upstream request and a `ResponsesPlan`),
then `adapter.ResponsesAdapter`, which answers with `response.anthropic_to_response` or
streams through `stream.ResponsesStreamTranslator`. Stateless: nothing is stored, so
`previous_response_id` is refused and clients replay the whole conversation (`store: false`);
thinking survives the round trip inside `reasoning.encrypted_content` (`response.envelope`).
"""
