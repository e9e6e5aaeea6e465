"""The chat route's adapter: Anthropic answers → chat.completion / chat.completion.chunk."""
from __future__ import annotations

import secrets
import time

import orjson

from services.core.errors import GatewayError
from services.protocols.adapter import translate_events
from services.protocols.openai_chat.request import ChatPlan
from services.protocols.openai_chat.response import anthropic_to_chat
from services.protocols.openai_chat.stream import KEEPALIVE, ChatStreamTranslator, error_chunk


class ChatAdapter:
    """Translates one call's answer for an OpenAI Chat Completions client."""

    content_type = "application/json"
    keepalive = KEEPALIVE

    def __init__(self, plan: ChatPlan) -> None:
        self.plan = plan
        self.created = int(time.time())
        self.translator = ChatStreamTranslator(plan, completion_id="chatcmpl-" + secrets.token_hex(12),
                                               created=self.created)
        self.tracker = self.translator.tracker

    def complete(self, raw: bytes, data: dict) -> bytes:
        return orjson.dumps(anthropic_to_chat(data, self.plan, created=self.created))

    def events(self, events: list[bytes]) -> bytes:
        return translate_events(events, self.tracker, self.translator.feed)

    def error_frame(self, err: GatewayError) -> bytes:
        return error_chunk(err.message, err.error_type, err.code)

    def settled(self, out: bytes, credits_used: str, credits_remaining: str) -> bytes:
        """The cost beside `usage` in the final usage chunk (when the client asked for one)."""
        end = out.rfind(b"}\n\ndata: [DONE]\n\n")
        if end < 0 or out.rfind(b'"choices":[],"usage":', 0, end) < 0:
            return out
        extra = orjson.dumps({"cheaplm_credits_used": credits_used, "cheaplm_credits_remaining": credits_remaining})
        return out[:end] + b"," + extra[1:-1] + out[end:]
