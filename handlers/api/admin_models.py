"""Management API for models and prices: /admin/api/models[/{id}]."""
from __future__ import annotations

from handlers.api.admin import AdminApiHandler
from services.core.types import Model


def model_json(doc: dict) -> dict:
    """A `models` document in the API's field names (prices as exact decimal text)."""
    model = Model.from_doc(doc)
    return {"id": doc["_id"], "upstream_model": model.upstream_id, "display_name": model.display_name,
            "aliases": list(model.aliases), "max_input": model.max_input, "max_output": model.max_output,
            "price_per_1k": doc["cost_per_1k"], "rates": doc.get("rates"), "features": list(model.features),
            "enabled": doc.get("enabled", True), "price_rule": model.price_rule}


def _diff(before: dict, after: dict) -> tuple[dict, dict]:
    changed = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in changed}, {k: after[k] for k in changed}


class ModelsAdminApiHandler(AdminApiHandler):
    async def get(self) -> None:
        docs = await self.services.catalog.list_all()
        self.write_json({"object": "list", "data": [model_json(d) for d in docs]})

    async def post(self) -> None:
        doc = await self.services.catalog.create(self.json_body())
        out = model_json(doc)
        await self.audit("model.create", doc["_id"], after=out)
        self.write_json(out, status=201)


class ModelAdminApiHandler(AdminApiHandler):
    async def get(self, model_id: str) -> None:
        self.write_json(model_json(await self.services.catalog.get_doc(model_id)))

    async def patch(self, model_id: str) -> None:
        before, after = await self.services.catalog.update(model_id, self.json_body())
        out = model_json(after)
        old, new = _diff(model_json(before), out)
        await self.audit("model.update", model_id, before=old, after=new)
        self.write_json(out)

    async def delete(self, model_id: str) -> None:
        before = await self.services.catalog.delete(model_id)
        await self.audit("model.delete", model_id, before=model_json(before))
        self.write_json({"id": model_id, "deleted": True})


routes = [
    (r"/admin/api/models/?", ModelsAdminApiHandler),
    (r"/admin/api/models/([^/]+)/?", ModelAdminApiHandler),
]
