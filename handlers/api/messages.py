"""Anthropic Messages API: /v1/messages (billed passthrough) and /v1/messages/count_tokens."""
from __future__ import annotations

from handlers.api.relay import RelayHandler
from handlers.base import ApiHandler
from services.gateway.upstream import check_forwarded_headers
from services.protocols.anthropic import AnthropicPassthrough, prepare_count_tokens, prepare_messages


class MessagesApiHandler(RelayHandler):
    endpoint = "messages"

    async def post(self) -> None:
        principal = await self.authenticate()
        req = prepare_messages(self.body(), self.services.catalog)
        self.services.keys.check_model(principal, req.model)
        await self.relay(principal, req, AnthropicPassthrough(), query=self.request.query)


class CountTokensApiHandler(ApiHandler):
    """Not billed, but under the key's rate limit and the account's standing like a billed
    call; identical bodies are answered from a short cache. A failure is an error, never a
    zero count."""

    async def post(self) -> None:
        principal = await self.authenticate()
        body = prepare_count_tokens(self.body(), self.services.catalog)
        check_forwarded_headers(self.request.headers)
        await self.services.ratelimit.check(principal)
        await self.services.billing.check_standing(principal)
        headers, raw = await self.services.count_tokens.count(body, self.request.headers, query=self.request.query)
        for name, value in headers.items():
            self.set_header(name, value)
        self.finish(raw)


_V = r"/(?:api/)?(?:v1/){0,2}"
routes = [
    (_V + r"messages/?", MessagesApiHandler),
    (_V + r"messages/count_tokens/?", CountTokensApiHandler),
]
