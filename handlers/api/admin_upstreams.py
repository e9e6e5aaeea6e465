"""Management API for the upstream pool: /admin/api/upstreams[/{id}[/test]]."""
from __future__ import annotations

from handlers.api.admin import AdminApiHandler


def _diff(before: dict, after: dict) -> tuple[dict, dict]:
    keys = [k for k in after if k not in ("health",) and before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def test_model(services, doc: dict) -> str:
    """The upstream model id a test call asks for: the first the upstream serves, else the
    catalog's first model."""
    models = services.catalog.models()
    names = dict(entry.partition("=")[::2] for entry in doc.get("models") or ())
    served = [m for m in models if not names or m.id in names]
    if not served:
        return next(iter(names.values()), "") or next(iter(names), "claude-haiku-4-5")
    return names.get(served[0].id) or served[0].upstream_id


class UpstreamsAdminApiHandler(AdminApiHandler):
    async def get(self) -> None:
        up = self.services.upstream
        self.write_json({"object": "list", "data": [up.view(d) for d in await up.list_docs()]})

    async def post(self) -> None:
        up = self.services.upstream
        out = up.view(await up.create(self.json_body()))
        await self.audit("upstream.create", out["id"], after={k: v for k, v in out.items() if k != "health"})
        self.write_json(out, status=201)


class UpstreamAdminApiHandler(AdminApiHandler):
    async def get(self, upstream_id: str) -> None:
        up = self.services.upstream
        self.write_json(up.view(await up.get_doc(upstream_id)))

    async def patch(self, upstream_id: str) -> None:
        up = self.services.upstream
        body = self.json_body()
        before, after = await up.update(upstream_id, body)
        old, new = _diff(up.view(before), up.view(after))
        if "api_key" in body:
            old["api_key_hint"], new["api_key_hint"] = up.view(before)["api_key_hint"], "replaced"
        await self.audit("upstream.update", upstream_id, before=old, after=new)
        self.write_json(up.view(after))

    async def delete(self, upstream_id: str) -> None:
        up = self.services.upstream
        before = up.view(await up.delete(upstream_id))
        await self.audit("upstream.delete", upstream_id, before={k: v for k, v in before.items() if k != "health"})
        self.write_json({"id": upstream_id, "deleted": True})


class UpstreamTestAdminApiHandler(AdminApiHandler):
    async def post(self, upstream_id: str) -> None:
        up = self.services.upstream
        doc = await up.get_doc(upstream_id)
        result = await up.test(upstream_id, test_model(self.services, doc))
        await self.audit("upstream.test", upstream_id, after={"ok": result["ok"], "status": result["status"]})
        self.write_json(result)


routes = [
    (r"/admin/api/upstreams/?", UpstreamsAdminApiHandler),
    (r"/admin/api/upstreams/([^/]+)/test/?", UpstreamTestAdminApiHandler),
    (r"/admin/api/upstreams/([^/]+)/?", UpstreamAdminApiHandler),
]
