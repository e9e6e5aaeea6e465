"""OpenAI Responses API (Codex CLI, `client.responses.create/stream`), translated to and from Claude.

Billing, holds, streaming, disconnects and keep-alives are the relay's, exactly as on every
other billed route; the formats are services/protocols/openai_responses/'s. Nothing is
stored: the endpoints that read stored responses answer 404.
"""
from __future__ import annotations

from handlers.api.relay import RelayHandler
from handlers.base import ApiHandler
from services.core.errors import GatewayError, NotFound
from services.protocols.openai_responses.adapter import ResponsesAdapter
from services.protocols.openai_responses.request import prepare_responses, responses_model
from services.protocols.openai_responses.response import error_code


class ResponsesApiHandler(RelayHandler):
    """POST /v1/responses (also /api/v1/…, a bare /responses and /cursor/v1/…)."""

    endpoint = "responses"
    error_flavor = "openai"

    async def post(self) -> None:
        principal = await self.authenticate()
        body = self.json_body()
        model, thinking = responses_model(body, self.services.catalog)
        self.services.keys.check_model(principal, model)
        request, plan = prepare_responses(body, model, force_thinking=thinking)
        if plan.dropped_params:
            self.set_header("x-cheaplm-dropped-params", ", ".join(plan.dropped_params))
        try:
            await self.relay(principal, request, ResponsesAdapter(plan))
        except GatewayError as err:
            # Codex acts on these codes: context_length_exceeded and insufficient_quota stop
            # its retries at once.
            if err.code is None and (err.status == 400 or err.error_type == "insufficient_credits"):
                code = error_code(err.error_type, err.message)
                if code in ("context_length_exceeded", "insufficient_quota"):
                    err.code = code
            raise


class StoredResponseApiHandler(ApiHandler):
    """GET/DELETE /v1/responses/{id} and its sub-resources: nothing is ever stored."""

    error_flavor = "openai"

    async def _none(self, *_: str) -> None:
        await self.authenticate()
        raise NotFound("This gateway does not store responses (it is stateless: send the whole "
                       "conversation in `input`).", code="not_found")

    get = post = delete = _none


routes = [
    (r"/(?:api/)?(?:v1/)?responses/?", ResponsesApiHandler),
    (r"/cursor(?:/v1)?/responses/?", ResponsesApiHandler),
    (r"/(?:api/)?(?:v1/)?responses/(.+)", StoredResponseApiHandler),
]
