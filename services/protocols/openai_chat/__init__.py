"""OpenAI Chat Completions (and Cursor's flavour of it), translated to and from Claude.

Used in this order: `cursor.responses_to_chat` (the Cursor route only), `request.chat_model`
and `request.prepare_chat` (the upstream request and a `ChatPlan`), then `adapter.ChatAdapter`,
which answers with `response.anthropic_to_chat` or streams through `stream.ChatStreamTranslator`.
"""
