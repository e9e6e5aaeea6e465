"""The Responses route's adapter: Anthropic answers → `Response` objects and Responses events."""
from __future__ import annotations

import secrets
import time

import orjson

from services.core.errors import GatewayError
from services.protocols.adapter import translate_events
from services.protocols.openai_responses.request import ResponsesPlan
from services.protocols.openai_responses.response import anthropic_to_response
from services.protocols.openai_responses.stream import ResponsesStreamTranslator, keepalive_frame


class ResponsesAdapter:
    """Translates one call's answer for an OpenAI Responses client (Codex CLI, the SDK)."""

    content_type = "application/json"

    def __init__(self, plan: ResponsesPlan) -> None:
        self.plan = plan
        self.created = int(time.time())
        # Our own id, known before the upstream answers, so the keep-alive can name it.
        self.response_id = "resp_" + secrets.token_hex(12)
        self.translator = ResponsesStreamTranslator(plan, response_id=self.response_id, created=self.created)
        self.tracker = self.translator.tracker
        self.keepalive = keepalive_frame(plan, self.response_id, self.created)

    def complete(self, raw: bytes, data: dict) -> bytes:
        return orjson.dumps(anthropic_to_response(data, self.plan, response_id=self.response_id,
                                                  created=self.created))

    def events(self, events: list[bytes]) -> bytes:
        return translate_events(events, self.tracker, self.translator.feed)

    def error_frame(self, err: GatewayError) -> bytes:
        return self.translator.failed(err.error_type, err.message)

    def settled(self, out: bytes, credits_used: str, credits_remaining: str) -> bytes:
        """The cost beside `usage` in the final event's response object."""
        return self.translator.with_cost(out, {"cheaplm_credits_used": credits_used,
                                               "cheaplm_credits_remaining": credits_remaining})
