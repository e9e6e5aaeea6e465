"""Admin operations pages: overview, every key, top-up codes, usage, sign-up settings."""
from __future__ import annotations

import tornado.web

from handlers.api.admin_ops import (
    CODE_CSV_FIELDS,
    USAGE_CSV_FIELDS,
    code_views,
    csv_text,
    key_views,
    overview_data,
    usage_query,
    usage_rows,
)
from handlers.pages.admin.base import AdminPageHandler
from handlers.pages.dashboard import METRICS, last_days, usage_chart
from services.core.errors import Conflict, InvalidRequest, NotFound
from services.core.money import fmt_credits

PAGE_SIZE = 50
USAGE_FILTERS = ("username", "key_id", "model", "upstream", "status", "since", "until")


class OverviewPageHandler(AdminPageHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        metric = self.get_argument("metric", "credits")
        metric = metric if metric in METRICS else "credits"
        data = await overview_data(self.services, self.application.settings["keepalive"])
        days = last_days(30)
        _, user_count = await self.services.users.search("", limit=1)
        self.render_admin("overview.html", data=data, chart=usage_chart(data["rows"], days, metric),
                          metric=metric, metrics=METRICS, user_count=user_count, stats=data)


class KeysPageHandler(AdminPageHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        q, status, page = self.get_argument("q", "")[:100], self.get_argument("status", ""), self.page_argument()
        status = status if status in ("active", "frozen", "revoked") else ""
        docs, total = await self.services.keys.list_all(q, status=status, limit=PAGE_SIZE,
                                                        skip=(page - 1) * PAGE_SIZE)
        self.render_admin("keys.html", keys=await key_views(self.services, docs), total=total, q=q,
                          filter_status=status,
                          page=page, more=page * PAGE_SIZE < total)

    @tornado.web.authenticated
    async def post(self) -> None:
        key_id, action = self.get_argument("key_id", ""), self.get_argument("action", "")
        if action not in ("freeze", "unfreeze", "revoke"):
            raise InvalidRequest("Unknown action.", param="action")
        keys = self.services.keys
        before = await keys.get(key_id)
        doc = await keys.update(key_id, frozen={"freeze": True, "unfreeze": False}.get(action),
                                revoked=action == "revoke")
        await self.audit("key.revoke" if action == "revoke" else "key.update", key_id,
                         before={"frozen": before.get("frozen", False)},
                         after={"revoked": True} if action == "revoke" else {"frozen": doc.get("frozen", False)})
        self.flash(f"Key {before['prefix']} {'revoked' if action == 'revoke' else action + 'd'}.")
        self.redirect(self.get_argument("back", "/admin/keys") if self.get_argument("back", "").startswith(
            "/admin/") else "/admin/keys")


class CodesPageHandler(AdminPageHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.show()

    async def show(self, *, errors: dict | None = None, form: dict | None = None, new_codes: list | None = None,
                   status_code: int = 200) -> None:
        q, status, page = self.get_argument("q", "")[:100], self.get_argument("status", ""), self.page_argument()
        status = status if status in ("unused", "redeemed", "void", "expired") else ""
        if self.get_argument("format", "") == "csv":
            docs, _ = await self.services.topup.list(q, status=status, limit=100_000)
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", 'attachment; filename="topup-codes.csv"')
            return self.finish(csv_text(await code_views(self.services, docs), CODE_CSV_FIELDS))
        docs, total = await self.services.topup.list(q, status=status, limit=PAGE_SIZE, skip=(page - 1) * PAGE_SIZE)
        self.render_admin("codes.html", status=status_code, codes=await code_views(self.services, docs), total=total,
                          q=q, filter_status=status, page=page, more=page * PAGE_SIZE < total, errors=errors or {},
                          form=form or {"count": 10}, new_codes=new_codes)

    @tornado.web.authenticated
    async def post(self) -> None:
        if self.get_argument("action", "") == "void":
            code_id = self.get_argument("code_id", "")
            try:
                doc = await self.services.topup.void(code_id)
            except (Conflict, NotFound) as exc:
                return await self.show(errors={"form": exc.message}, status_code=exc.status)
            await self.audit("topup.void", code_id, before={"status": "unused"}, after={"status": "void"})
            self.flash(f"Code {doc['prefix']}… voided.")
            return self.redirect("/admin/codes")
        form = {k: self.get_argument(k, "").strip()[:200] for k in ("credits", "count", "note", "expires_at")}
        count = int(form["count"]) if form["count"].isdigit() else form["count"]
        try:
            codes = await self.services.topup.generate(form["credits"] or None, count=count, note=form["note"],
                                                       created_by=self.actor, expires_at=form["expires_at"] or None)
        except InvalidRequest as exc:
            return await self.show(errors={exc.param or "form": exc.message}, form=form, status_code=400)
        await self.audit("topup.generate", None, after={"credits": form["credits"], "count": len(codes),
                                                       "note": form["note"]})
        await self.show(new_codes=codes)


class UsagePageHandler(AdminPageHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        filters = {k: self.get_argument(k, "")[:100] for k in USAGE_FILTERS}
        page = self.page_argument()
        try:
            query = await usage_query(self)
        except (InvalidRequest, NotFound) as exc:
            return self.render_admin("usage.html", status=400, filters=filters, rows=[], totals=None, page=1,
                                     more=False, errors={exc.param or "username": exc.message})
        usage = self.services.usage
        if self.get_argument("format", "") == "csv":
            rows = await usage_rows(self.services, [r async for r in usage.admin_export(query)])
            for r in rows:
                r["credits"] = fmt_credits(r.get("credits", 0))
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", 'attachment; filename="usage.csv"')
            return self.finish(csv_text(rows, USAGE_CSV_FIELDS))
        rows, more = await usage.admin_page(query, limit=PAGE_SIZE, skip=(page - 1) * PAGE_SIZE)
        self.render_admin("usage.html", filters=filters, rows=await usage_rows(self.services, rows),
                          totals=await usage.admin_totals(query), page=page, more=more, errors={})


class SettingsPageHandler(AdminPageHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        current = await self.services.site.signup()
        self.render_admin("settings.html", form={**current, "credits": fmt_credits(current["credits"])}, errors={})

    @tornado.web.authenticated
    async def post(self) -> None:
        form = {k: self.get_argument(k, "").strip()[:200] for k in ("mode", "credits", "invite_code")}
        try:
            before, after = await self.services.site.set_signup(mode=form["mode"], credits=form["credits"] or "0",
                                                                invite_code=form["invite_code"])
        except InvalidRequest as exc:
            return self.render_admin("settings.html", status=400, form=form, errors={exc.param or "form": exc.message})
        hide = lambda d: {**d, "credits": fmt_credits(d["credits"]), "invite_code": "set" if d["invite_code"] else ""}  # noqa: E731
        await self.audit("settings.signup", "signup", before=hide(before), after=hide(after))
        self.flash("Sign-up settings saved.")
        self.redirect("/admin/settings")


routes = [
    (r"/admin/?", OverviewPageHandler),
    (r"/admin/keys/?", KeysPageHandler),
    (r"/admin/codes/?", CodesPageHandler),
    (r"/admin/usage/?", UsagePageHandler),
    (r"/admin/settings/?", SettingsPageHandler),
]
