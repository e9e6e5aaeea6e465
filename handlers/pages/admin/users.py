"""Admin user pages: search and sort users; one user's balance, keys, usage and ledger, with
credit adjustments, freezing, roles, passwords and rate limits."""
from __future__ import annotations

from urllib.parse import quote

import tornado.web

from handlers.pages.admin.base import AdminPageHandler
from services.admin.users import REASON_MAX
from services.core.errors import Conflict, InvalidRequest
from services.core.money import fmt_credits

PAGE_SIZE = 50


class UsersPageHandler(AdminPageHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        q, page = self.get_argument("q", "")[:100], self.page_argument()
        sort = self.get_argument("sort", "created")
        sort = sort if sort in ("created", "balance", "name") else "created"
        users, total = await self.services.users.search(q, sort=sort, limit=PAGE_SIZE, skip=(page - 1) * PAGE_SIZE)
        self.render_admin("users.html", users=users, total=total, q=q, sort=sort, page=page,
                          more=page * PAGE_SIZE < total)


class UserPageHandler(AdminPageHandler):
    """GET: the user; POST action=credits|freeze|unfreeze|role|password|rpm."""

    @tornado.web.authenticated
    async def get(self, username: str) -> None:
        await self.show(username)

    async def show(self, username: str, *, errors: dict | None = None, status: int = 200, form: dict | None = None,
                   reset_link: str | None = None):
        s = self.services
        user = await s.users.by_username(username)
        totals = await s.usage.totals_by_key(user["_id"])
        keys = await s.keys.list_for_user(user["_id"])
        for k in keys:
            k["spent"] = totals.get(k["_id"], {}).get("credits", 0)
        usage = await s.usage.recent(user_id=user["_id"], limit=20)
        ledger = await s.billing.ledger(user["_id"], limit=20)
        self.render_admin("user.html", status=status, user=user, keys=keys, usage=usage, ledger=ledger,
                          errors=errors or {}, form=form or {}, reset_link=reset_link,
                          spent=sum(t.get("credits", 0) for t in totals.values()))

    @tornado.web.authenticated
    async def post(self, username: str) -> None:
        user = await self.services.users.by_username(username)
        action = self.get_argument("action", "")
        try:
            message = await self._act(user, action)
        except (InvalidRequest, Conflict) as exc:
            field = exc.param or {"credits": "amount"}.get(action, action)
            return await self.show(username, errors={field: exc.message}, status=exc.status,
                                   form={"amount": self.get_argument("amount", "")[:40],
                                         "reason": self.get_argument("reason", "")[:REASON_MAX]})
        if action == "reset":
            return await self.show(user["username"], reset_link=f"{self.base_url()}/reset/{message}")
        self.flash(message)
        self.redirect("/admin/users/" + quote(user["username"]))

    async def _act(self, user: dict, action: str) -> str:
        """Do `action` through the admin actions (audited there); the flash message to show
        (for "reset", the one-time token)."""
        act, name, arg = self.services.admin_users, user["username"], self.get_argument
        if action == "credits":
            credits = await act.adjust_credits(self.actor, user, arg("amount", "").strip() or None, arg("reason", ""))
            return f"Credits of {name} are now {fmt_credits(credits)}."
        if action in ("freeze", "unfreeze"):
            await act.set_frozen(self.actor, user, action == "freeze")
            return f"{name} is {'frozen' if action == 'freeze' else 'active again'}."
        if action == "role":
            doc = await act.set_role(self.actor, user, arg("role", ""))
            return f"{name} is now {'an admin' if doc['role'] == 'admin' else 'a plain user'}."
        if action == "password":
            await act.set_password(self.actor, user, arg("password", ""))
            return f"{name}'s password was replaced; their sessions were ended."
        if action == "rpm":
            raw = arg("rpm", "").strip() or "0"
            await act.set_rpm(self.actor, user, int(raw) if raw.isdigit() else raw)
            return f"{name}'s keys without their own limit now allow {raw} requests per minute."
        if action == "reset":
            return await act.reset_link_token(self.actor, user)
        raise InvalidRequest("Unknown action.", param="action")

routes = [
    (r"/admin/users/?", UsersPageHandler),
    (r"/admin/users/([A-Za-z0-9_.-]{1,64})/?", UserPageHandler),
]
