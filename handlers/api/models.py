"""Model listing (OpenAI or Anthropic shape), model details, and /v1/profile."""
from __future__ import annotations

import datetime as dt

from handlers.base import ApiHandler
from services.core.errors import InvalidRequest, NotFound
from services.core.money import to_credits


def openai_model(m) -> dict:
    return {"id": m.id, "object": "model", "created": m.created, "owned_by": "anthropic"}


def anthropic_model(m) -> dict:
    created = dt.datetime.fromtimestamp(m.created, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": "model", "id": m.id, "display_name": m.display_name, "created_at": created,
            "max_input_tokens": m.max_input, "max_tokens": m.max_output}


def model_info(m) -> dict:
    return {"id": m.id, "display_name": m.display_name, "upstream_id": m.upstream_id,
            "max_input_tokens": m.max_input, "max_output_tokens": m.max_output,
            "cost_per_1k_tokens": to_credits(m.price_per_1k_micro), "features": list(m.features),
            "aliases": list(m.aliases), "supports_thinking": m.supports_thinking,
            "supports_vision": "vision" in m.features, "price_rule": m.price_rule,
            "rates": ({k: to_credits(v) for k, v in vars(m.rates).items()} if m.rates else None)}


class ModelsApiHandler(ApiHandler):
    """GET /v1/models: OpenAI list shape, or Anthropic's when `anthropic-version` is sent."""

    async def get(self) -> None:
        await self.authenticate()
        models = self.services.catalog.models()
        if self.request.headers.get("anthropic-version"):
            data = [anthropic_model(m) for m in models]
            self.write_json({"data": data, "has_more": False,
                             "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None})
        else:
            self.write_json({"object": "list", "data": [openai_model(m) for m in models]})


class ModelApiHandler(ApiHandler):
    """GET /v1/models/{id}: one model (aliases resolve), in the requested shape."""

    async def get(self, name: str) -> None:
        await self.authenticate()
        try:
            model = self.services.catalog.resolve(name)
        except InvalidRequest:
            raise NotFound(f"Unknown model: {name!r}") from None
        anthropic = bool(self.request.headers.get("anthropic-version"))
        self.write_json(anthropic_model(model) if anthropic else openai_model(model))


class ModelInfoApiHandler(ApiHandler):
    """GET /v1/models/info: every catalog field."""

    async def get(self) -> None:
        await self.authenticate()
        self.write_json({"object": "list", "data": [model_info(m) for m in self.services.catalog.models()]})


class ProfileApiHandler(ApiHandler):
    """GET /v1/profile: {"username", "credits", "key_name"}."""

    async def get(self) -> None:
        principal = await self.authenticate()
        credits = await self.services.billing.credits(principal.user_id)
        self.write_json({"username": principal.username, "credits": to_credits(credits),
                         "key_name": principal.key_name})


_V = r"/(?:api/)?(?:v1/){0,2}"
routes = [
    (_V + r"models/?", ModelsApiHandler),
    (_V + r"models/info/?", ModelInfoApiHandler),
    (_V + r"models/([^/]+)", ModelApiHandler),
    (_V + r"profile/?", ProfileApiHandler),
    (r"/cursor(?:/v1)?/models/?", ModelsApiHandler),
]
