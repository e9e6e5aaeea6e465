"""OpenAI Chat Completions (and Cursor's flavour of it), translated to and from Claude.

Billing, holds, streaming, disconnects and keep-alives are the relay's, exactly as on the
Anthropic path; the formats are services/protocols/openai_chat/'s.
"""
from __future__ import annotations

from handlers.api.relay import RelayHandler
from services.protocols.openai_chat.adapter import ChatAdapter
from services.protocols.openai_chat.cursor import responses_to_chat
from services.protocols.openai_chat.request import chat_model, prepare_chat


class ChatCompletionsApiHandler(RelayHandler):
    """POST /v1/chat/completions (also /api/v1/… and a bare /chat/completions)."""

    endpoint = "chat"
    error_flavor = "openai"
    cursor = False

    async def post(self) -> None:
        principal = await self.authenticate()
        body = self.json_body()
        if self.cursor:
            body = responses_to_chat(body)
        model, thinking = chat_model(body, self.services.catalog)
        self.services.keys.check_model(principal, model)
        request, plan = prepare_chat(body, model, force_thinking=thinking)
        if plan.dropped_params:
            self.set_header("x-cheaplm-dropped-params", ", ".join(plan.dropped_params))
        await self.relay(principal, request, ChatAdapter(plan))


class CursorChatApiHandler(ChatCompletionsApiHandler):
    """POST /cursor/v1/chat/completions: also accepts Responses-API-shaped bodies."""

    endpoint = "cursor"
    cursor = True


routes = [
    (r"/(?:api/)?(?:v1/)?chat/completions/?", ChatCompletionsApiHandler),
    (r"/cursor(?:/v1)?/chat/completions/?", CursorChatApiHandler),
]
