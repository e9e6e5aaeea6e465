"""Admin audit trail and admin API tokens."""
from __future__ import annotations

import tornado.web

from handlers.pages.admin.base import AdminPageHandler
from services.core.errors import InvalidRequest

PAGE_SIZE = 50


class AuditPageHandler(AdminPageHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        page = self.page_argument()
        filters = {k: self.get_argument(k, "")[:100] for k in ("actor", "action", "target")}
        rows = await self.services.audit.list(**{k: v or None for k, v in filters.items()},
                                              limit=PAGE_SIZE + 1, skip=(page - 1) * PAGE_SIZE)
        self.render_admin("audit.html", rows=rows[:PAGE_SIZE], more=len(rows) > PAGE_SIZE, page=page,
                          filters=filters)


class TokensPageHandler(AdminPageHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.show()

    async def show(self, *, new_token: str | None = None, errors: dict | None = None, status: int = 200) -> None:
        self.render_admin("tokens.html", status=status, tokens=await self.services.admin_tokens.list(),
                          new_token=new_token, errors=errors or {})

    @tornado.web.authenticated
    async def post(self) -> None:
        try:
            raw, doc = await self.services.admin_tokens.create(self.get_argument("name", "")[:200],
                                                               created_by=self.actor)
        except InvalidRequest as exc:
            return await self.show(errors={"name": exc.message}, status=400)
        await self.audit("token.create", str(doc["_id"]), after={"name": doc["name"]})
        await self.show(new_token=raw)


class TokenRevokePageHandler(AdminPageHandler):
    @tornado.web.authenticated
    async def post(self, token_id: str) -> None:
        doc = await self.services.admin_tokens.revoke(token_id)
        await self.audit("token.revoke", token_id, before={"name": doc["name"]})
        self.flash(f"Token {doc['name']!r} revoked.")
        self.redirect("/admin/tokens")


routes = [
    (r"/admin/audit/?", AuditPageHandler),
    (r"/admin/tokens/?", TokensPageHandler),
    (r"/admin/tokens/([0-9a-f]{24})/revoke/?", TokenRevokePageHandler),
]
