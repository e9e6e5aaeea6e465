"""Admin upstream pages: the pool with each upstream's health (/admin/upstreams), one
upstream's edit form, its one-token test, deletion."""
from __future__ import annotations

import tornado.web

from handlers.api.admin_upstreams import _diff, test_model
from handlers.pages.admin.base import AdminPageHandler
from services.core.errors import Conflict, InvalidRequest


def form_body(handler, *, creating: bool) -> dict:
    """The API body for an upstream form (numbers left as typed when they are not numbers,
    so validation names the field; an empty key field keeps the stored key)."""
    arg = handler.get_argument
    body: dict = {"name": arg("name", "").strip(), "base_url": arg("base_url", "").strip()}
    key = arg("api_key", "").strip()
    if key or creating:
        body["api_key"] = key
    for name in ("priority", "weight"):
        raw = arg(name, "").strip()
        body[name] = int(raw) if raw.isdigit() else raw
    body["models"] = [m.strip() for m in arg("models", "").split(",") if m.strip()]
    body["enabled"] = arg("enabled", "") == "on"
    betas = [b.strip() for b in arg("beta_allowlist", "").split(",") if b.strip()]
    body["beta_allowlist"] = betas if arg("beta_policy", "forward") == "allowlist" else None
    return body


def form_values(view: dict | None, body: dict | None = None) -> dict:
    if body is not None:
        return {**body, "models": ", ".join(body["models"]),
                "beta_allowlist": ", ".join(body["beta_allowlist"] or []),
                "beta_policy": "allowlist" if body["beta_allowlist"] is not None else "forward"}
    if view is None:
        return {"priority": 1, "weight": 1, "enabled": True, "models": "", "beta_policy": "forward",
                "beta_allowlist": ""}
    return {**view, "models": ", ".join(view["models"]),
            "beta_allowlist": ", ".join(view["beta_allowlist"] or []),
            "beta_policy": "allowlist" if view["beta_allowlist"] is not None else "forward"}


class UpstreamsPageHandler(AdminPageHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.show()

    async def show(self, *, errors: dict | None = None, form: dict | None = None, status: int = 200) -> None:
        up = self.services.upstream
        self.render_admin("upstreams.html", status=status, upstreams=[up.view(d) for d in await up.list_docs()],
                          errors=errors or {}, form=form or form_values(None))

    @tornado.web.authenticated
    async def post(self) -> None:
        body = form_body(self, creating=True)
        up = self.services.upstream
        try:
            view = up.view(await up.create(body))
        except (InvalidRequest, Conflict) as exc:
            return await self.show(errors={exc.param or "form": exc.message}, form=form_values(None, body),
                                   status=exc.status)
        await self.audit("upstream.create", view["id"], after={k: v for k, v in view.items() if k != "health"})
        self.flash(f"Upstream {view['name']} added.")
        self.redirect("/admin/upstreams")


class UpstreamPageHandler(AdminPageHandler):
    """GET: the edit form; POST action=save|test|delete."""

    @tornado.web.authenticated
    async def get(self, upstream_id: str) -> None:
        up = self.services.upstream
        view = up.view(await up.get_doc(upstream_id))
        self.render_admin("upstream.html", upstream=view, form=form_values(view), errors={}, result=None)

    @tornado.web.authenticated
    async def post(self, upstream_id: str) -> None:
        up = self.services.upstream
        action = self.get_argument("action", "save")
        if action == "delete":
            before = up.view(await up.delete(upstream_id))
            await self.audit("upstream.delete", upstream_id, before={k: v for k, v in before.items() if k != "health"})
            self.flash(f"Upstream {before['name']} deleted.")
            return self.redirect("/admin/upstreams")
        if action == "test":
            doc = await up.get_doc(upstream_id)
            result = await up.test(upstream_id, test_model(self.services, doc))
            await self.audit("upstream.test", upstream_id, after={"ok": result["ok"], "status": result["status"]})
            view = up.view(doc)
            return self.render_admin("upstream.html", upstream=view, form=form_values(view), errors={}, result=result)
        body = form_body(self, creating=False)
        try:
            before, after = await up.update(upstream_id, body)
        except (InvalidRequest, Conflict) as exc:
            view = up.view(await up.get_doc(upstream_id))
            return self.render_admin("upstream.html", status=exc.status, upstream=view,
                                     form=form_values(view, body), errors={exc.param or "form": exc.message},
                                     result=None)
        old, new = _diff(up.view(before), up.view(after))
        if "api_key" in body:
            old["api_key_hint"], new["api_key_hint"] = up.view(before)["api_key_hint"], "replaced"
        await self.audit("upstream.update", upstream_id, before=old, after=new)
        self.flash(f"Upstream {after['name']} saved.")
        self.redirect("/admin/upstreams")


routes = [
    (r"/admin/upstreams/?", UpstreamsPageHandler),
    (r"/admin/upstreams/([A-Za-z0-9_-]{1,64})/?", UpstreamPageHandler),
]
