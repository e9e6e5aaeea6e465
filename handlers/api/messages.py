"""Anthropic Messages API: /v1/messages (billed passthrough) and /v1/messages/count_tokens."""
from __future__ import annotations

from handlers.api.relay import RelayHandler
from handlers.base import ApiHandler
from services.protocols.anthropic import AnthropicPassthrough, prepare_count_tokens, prepare_messages, with_betas


class MessagesApiHandler(RelayHandler):
    endpoint = "messages"

    async def post(self) -> None:
        principal = await self.authenticate()
        req = with_betas(prepare_messages(self.request.body, self.services.catalog),
                         self.request.headers.get("anthropic-beta"))
        self.services.keys.check_model(principal, req.model)
        await self.relay(principal, req, AnthropicPassthrough(), query=self.request.query)


class CountTokensApiHandler(ApiHandler):
    """Forwarded to the upstream, not billed; a failure is an error, never a zero count."""

    async def post(self) -> None:
        await self.authenticate()
        body = prepare_count_tokens(self.request.body, self.services.catalog)
        headers, raw = await self.services.upstream.call(
            "/v1/messages/count_tokens", body, self.request.headers, query=self.request.query)
        for name, value in headers.items():
            self.set_header(name, value)
        self.finish(raw)


_V = r"/(?:api/)?(?:v1/){0,2}"
routes = [
    (_V + r"messages/?", MessagesApiHandler),
    (_V + r"messages/count_tokens/?", CountTokensApiHandler),
]
