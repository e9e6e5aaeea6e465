"""Admin user pages: search and sort users; one user's balance, keys, usage and ledger, with
credit adjustments, freezing, roles, passwords and rate limits."""
from __future__ import annotations

from urllib.parse import quote

import tornado.web

from handlers.pages.admin.base import AdminPageHandler
from services.billing.credits import parse_amount
from services.core.errors import Conflict, InvalidRequest
from services.core.money import fmt_credits

PAGE_SIZE = 50
REASON_MAX = 500


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
        s = self.services
        user = await s.users.by_username(username)
        action = self.get_argument("action", "")
        if action == "reset":
            token = await s.users.create_reset(user["_id"])
            await self.audit("user.reset_link", user["username"])
            return await self.show(user["username"], reset_link=f"{self.base_url()}/reset/{token}")
        try:
            message = await self._act(user, action)
        except (InvalidRequest, Conflict) as exc:
            field = exc.param or {"credits": "amount"}.get(action, action)
            return await self.show(username, errors={field: exc.message}, status=exc.status,
                                   form={"amount": self.get_argument("amount", "")[:40],
                                         "reason": self.get_argument("reason", "")[:REASON_MAX]})
        self.flash(message)
        self.redirect("/admin/users/" + quote(user["username"]))

    async def _act(self, user: dict, action: str) -> str:
        s, name = self.services, user["username"]
        if action == "credits":
            reason = self.get_argument("reason", "").strip()
            amount = self.get_argument("amount", "").strip()
            parse_amount(amount or None)
            if not reason or len(reason) > REASON_MAX:
                raise InvalidRequest(f"Say why (at most {REASON_MAX} characters).", param="reason")
            before = user["balance"] + user["held"]
            credits = await s.billing.adjust(user["_id"], amount, note=reason)
            await self.audit("user.credits", name, before={"credits": fmt_credits(before)},
                             after={"credits": fmt_credits(credits), "reason": reason})
            return f"Credits of {name} are now {fmt_credits(credits)}."
        if action in ("freeze", "unfreeze"):
            await s.users.set_frozen(user["_id"], action == "freeze")
            s.keys.invalidate()
            await self.audit("user.freeze", name, before={"frozen": user.get("frozen", False)},
                             after={"frozen": action == "freeze"})
            return f"{name} is {'frozen' if action == 'freeze' else 'active again'}."
        if action == "role":
            doc, before = await s.users.set_role(user["_id"], self.get_argument("role", ""))
            await self.audit("user.role", name, before={"role": before}, after={"role": doc["role"]})
            return f"{name} is now {'an admin' if doc['role'] == 'admin' else 'a plain user'}."
        if action == "password":
            await s.users.set_password(user["_id"], self.get_argument("password", ""))
            await self.audit("user.password", name)
            return f"{name}'s password was replaced; their sessions were ended."
        if action == "rpm":
            raw = self.get_argument("rpm", "").strip() or "0"
            if not raw.isdigit() or int(raw) > 1_000_000:
                raise InvalidRequest("A whole number of requests per minute (0 = the gateway default).", param="rpm")
            await s.users.set_rpm(user["_id"], int(raw))
            s.keys.invalidate()
            await self.audit("user.rpm", name, before={"rpm": user.get("rpm", 0)}, after={"rpm": int(raw)})
            return f"{name}'s keys without their own limit now allow {raw or 'the default'} requests per minute."
        raise InvalidRequest("Unknown action.", param="action")


routes = [
    (r"/admin/users/?", UsersPageHandler),
    (r"/admin/users/([A-Za-z0-9_.-]{1,64})/?", UserPageHandler),
]
