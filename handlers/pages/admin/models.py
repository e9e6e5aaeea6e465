"""Admin model pages: the catalog with prices (/admin/models), one model's edit form."""
from __future__ import annotations

from urllib.parse import quote

import tornado.web

from handlers.api.admin_models import _diff, model_json
from handlers.pages.admin.base import AdminPageHandler
from services.core.errors import Conflict, InvalidRequest
from services.core.types import RATE_FIELDS

KNOWN_FEATURES = ("thinking", "vision")


def form_body(handler, *, creating: bool) -> dict:
    """The API body for a model form (numbers left as typed when they are not numbers, so
    validation names the field)."""
    arg = handler.get_argument
    body: dict = {}
    if creating:
        body["id"] = arg("id", "").strip()
    for name in ("upstream_model", "display_name"):
        value = arg(name, "").strip()
        if value:
            body[name] = value
    body["aliases"] = [a.strip() for a in arg("aliases", "").replace("\n", ",").split(",") if a.strip()]
    for name in ("max_input", "max_output"):
        raw = arg(name, "").strip().replace(",", "").replace("_", "")
        body[name] = int(raw) if raw.isdigit() else raw
    body["price_per_1k"] = arg("price_per_1k", "").strip()
    body["rates"] = ({f: arg(f"rate_{f}", "").strip() for f in RATE_FIELDS} if arg("split", "") == "on" else None)
    body["features"] = [f for f in handler.get_arguments("features") if f in KNOWN_FEATURES]
    body["enabled"] = arg("enabled", "") == "on"
    return body


def form_values(doc: dict | None) -> dict:
    if doc is None:
        return {"enabled": True, "features": list(KNOWN_FEATURES), "aliases": "", "rates": {}}
    m = model_json(doc)
    return {**m, "aliases": ", ".join(m["aliases"]), "rates": m["rates"] or {}, "split": bool(m["rates"])}


class ModelsPageHandler(AdminPageHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.show()

    async def show(self, *, errors: dict | None = None, form: dict | None = None, status: int = 200) -> None:
        docs = await self.services.catalog.list_all()
        self.render_admin("models.html", status=status, models=[model_json(d) for d in docs], errors=errors or {},
                          form=form or form_values(None), rate_fields=RATE_FIELDS, known_features=KNOWN_FEATURES)

    @tornado.web.authenticated
    async def post(self) -> None:
        body = form_body(self, creating=True)
        try:
            doc = await self.services.catalog.create(body)
        except (InvalidRequest, Conflict) as exc:
            form = {**body, "aliases": ", ".join(body["aliases"]), "rates": body["rates"] or {},
                    "split": body["rates"] is not None}
            return await self.show(errors={exc.param or "form": exc.message}, form=form, status=exc.status)
        await self.audit("model.create", doc["_id"], after=model_json(doc))
        self.flash(f"Model {doc['_id']} added.")
        self.redirect("/admin/models")


class ModelPageHandler(AdminPageHandler):
    @tornado.web.authenticated
    async def get(self, model_id: str) -> None:
        doc = await self.services.catalog.get_doc(model_id)
        self.render_admin("model.html", model_id=model_id, form=form_values(doc), errors={},
                          rate_fields=RATE_FIELDS, known_features=KNOWN_FEATURES)

    @tornado.web.authenticated
    async def post(self, model_id: str) -> None:
        catalog = self.services.catalog
        if self.get_argument("action", "") == "delete":
            before = await catalog.delete(model_id)
            await self.audit("model.delete", model_id, before=model_json(before))
            self.flash(f"Model {model_id} deleted.")
            return self.redirect("/admin/models")
        body = form_body(self, creating=False)
        try:
            before, after = await catalog.update(model_id, body)
        except (InvalidRequest, Conflict) as exc:
            form = {**body, "id": model_id, "aliases": ", ".join(body["aliases"]), "rates": body["rates"] or {},
                    "split": body["rates"] is not None}
            return self.render_admin("model.html", status=exc.status, model_id=model_id, form=form,
                                     errors={exc.param or "form": exc.message}, rate_fields=RATE_FIELDS,
                                     known_features=KNOWN_FEATURES)
        old, new = _diff(model_json(before), model_json(after))
        await self.audit("model.update", model_id, before=old, after=new)
        self.flash(f"Model {model_id} saved; the next request uses it.")
        self.redirect("/admin/models/" + quote(model_id))


routes = [
    (r"/admin/models/?", ModelsPageHandler),
    (r"/admin/models/([A-Za-z0-9._:-]{1,100})/?", ModelPageHandler),
]
