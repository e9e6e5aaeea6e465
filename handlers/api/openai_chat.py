"""OpenAI Chat Completions (and Cursor's flavour of it), translated to and from Claude.

Billing, holds, streaming, disconnects and keep-alives are the relay's, exactly as on the
Anthropic path; this module only adapts the formats (services/protocols/).
"""
from __future__ import annotations

import secrets
import time

import orjson

from handlers.api.relay import RelayHandler, note_usage
from services.core.errors import GatewayError, InvalidRequest
from services.core.types import Usage
from services.protocols.anthropic import estimate_input_tokens
from services.protocols.openai_compat import (
    ChatPlan,
    ChatStreamTranslator,
    ModelLimits,
    anthropic_to_chat,
    chat_to_anthropic,
    responses_to_chat,
    split_thinking_suffix,
)
from services.protocols.sse import event_data, event_name


class ChatAdapter:
    """Anthropic answers → chat.completion / chat.completion.chunk."""

    content_type = "application/json"
    keepalive = ChatStreamTranslator.KEEPALIVE

    def __init__(self, plan: ChatPlan) -> None:
        self.plan = plan
        self.completion_id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.translator = ChatStreamTranslator(plan, completion_id=self.completion_id, created=self.created)
        self.error: str | None = None
        self.saw_delta_usage = False
        self._streamed_chars = 0

    def complete(self, raw: bytes, data: dict) -> bytes:
        return orjson.dumps(anthropic_to_chat(data, self.plan, created=self.created))

    def events(self, events: list[bytes], usage: Usage) -> bytes:
        out = []
        for ev in events:
            name, data = event_name(ev).decode(), event_data(ev)
            if data is None:
                continue
            note_usage(self, name, data, usage)
            if name == "content_block_delta":
                delta = data.get("delta") or {}
                self._streamed_chars += len(delta.get("text") or delta.get("partial_json") or delta.get("thinking") or "")
            out.append(self.translator.feed(name, data))
        return b"".join(out)

    def error_frame(self, err: GatewayError) -> bytes:
        return b"data: " + orjson.dumps({"error": {"message": err.message, "type": err.error_type,
                                                   "code": err.code, "param": None}}) + b"\n\n"

    def finished(self) -> bool:
        return self.translator.done

    def estimated_output(self) -> int:
        return -(-self._streamed_chars // 4)


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
        name = body.get("model")
        if not isinstance(name, str):
            raise InvalidRequest("model: field required (a model name string)", param="model")
        name, thinking = split_thinking_suffix(name)
        model = self.services.catalog.resolve(name)
        self.services.keys.check_model(principal, model)
        limits = ModelLimits(upstream_id=model.upstream_id, max_output=model.max_output,
                             supports_thinking=model.supports_thinking, adaptive_thinking=model.adaptive_thinking)
        plan = chat_to_anthropic(body, limits, force_thinking=thinking)
        plan.requested_model = model.id  # the docs show the normalised id in responses
        if plan.dropped_params:
            self.set_header("x-cheaplm-dropped-params", ", ".join(plan.dropped_params))
        raw = orjson.dumps(plan.body)
        await self.relay(principal, model, body=raw, stream=plan.stream, max_tokens=plan.body["max_tokens"],
                         est_input_tokens=estimate_input_tokens(len(raw), plan.body["messages"]),
                         adapter=ChatAdapter(plan))


class CursorChatApiHandler(ChatCompletionsApiHandler):
    """POST /cursor/v1/chat/completions: also accepts Responses-API-shaped bodies."""

    endpoint = "cursor"
    cursor = True


routes = [
    (r"/(?:api/)?(?:v1/)?chat/completions/?", ChatCompletionsApiHandler),
    (r"/cursor(?:/v1)?/chat/completions/?", CursorChatApiHandler),
]
