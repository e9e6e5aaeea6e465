"""Client protocols, each translated to and from the upstream's Anthropic Messages API.

    adapter.py       the contract with the relay: UpstreamRequest, Adapter, UsageTracker
    sse.py           server-sent-event framing (EventBuffer, event_name, event_data)
    anthropic.py     Messages requests prepared for the upstream; AnthropicPassthrough
    openai_chat/     OpenAI Chat Completions: request.py (chat → Anthropic), response.py
                     (Anthropic → chat.completion), stream.py (the chunk state machine),
                     cursor.py (Responses-shaped bodies on the Cursor route), adapter.py
    openai_responses/  the OpenAI Responses API goes here, the same shape as openai_chat/

A protocol prepares an `UpstreamRequest` and supplies an `Adapter`; the relay
(services/gateway/relay.py) does the rest. Everything here is pure and synchronous.
"""
