"""API key pages: list and create (`/keys`), manage one key (`/keys/{id}`), revoke with
confirmation (`/keys/{id}/revoke`). Every lookup and change is owner-checked in KeyService."""
from __future__ import annotations

import datetime as dt

import tornado.web

from handlers.base import PageHandler, fmt_day
from services.accounts.keys import KEY_NAME_MAX
from services.core.clock import as_utc, utcnow
from services.core.errors import GatewayError, InvalidRequest
from services.core.money import fmt_credits

PAGE_SIZE = 50
NEW_KEY_COOKIE = "cheaplm_new_key"
NEW_KEY_MINUTES = 10
"""The new key's one-time handoff from the POST to the page it redirects to: a signed,
HttpOnly cookie scoped to /keys, read and cleared by the next GET (never in a URL)."""


def key_status(doc: dict, now: dt.datetime) -> tuple[str, str]:
    """(label, css class) for a key: Frozen, Expired, Cap reached or Active."""
    if doc.get("frozen"):
        return "Frozen", "frozen"
    expires = doc.get("expires_at")
    if expires is not None and as_utc(expires) <= now:
        return "Expired", "expired"
    if doc.get("credit_cap") is not None and (doc.get("cap_left") or 0) <= 0:
        return "Cap reached", "expired"
    return "Active", "active"


def key_view(doc: dict, totals: dict | None, now: dt.datetime) -> dict:
    """A key document plus what the pages show about it."""
    totals = totals or {"requests": 0, "total_tokens": 0, "credits": 0}
    status, css = key_status(doc, now)
    cap = doc.get("credit_cap")
    expires = doc.get("expires_at")
    return {**doc, "id": str(doc["_id"]), "status": status, "status_class": css, "usage": totals,
            "cap": fmt_credits(cap) if cap is not None else None,
            "expires_day": fmt_day(expires) if expires else "",
            "allowed": doc.get("allowed_models") or []}


class KeyFormMixin:
    """Reads the optional limits (credit cap, expiry date, allowed models) from a form."""

    def limits_from_form(self) -> tuple[dict, dict[str, str]]:
        limits = {"credit_cap": self.get_argument("credit_cap", "")[:32] or None,
                  "expires_at": self.get_argument("expires_at", "")[:32] or None,
                  "allowed_models": self.get_arguments("allowed_models")}
        errors: dict[str, str] = {}
        known = {m.id for m in self.services.catalog.models()}
        unknown = [m for m in limits["allowed_models"] if m not in known]
        if unknown:
            errors["allowed_models"] = f"Unknown model: {unknown[0][:64]}"
        if limits["expires_at"]:
            try:
                day = dt.date.fromisoformat(limits["expires_at"])
            except ValueError:
                errors["expires_at"] = "Enter a date as YYYY-MM-DD."
            else:
                if day <= utcnow().date():
                    errors["expires_at"] = "The expiry date must be in the future."
        return limits, errors

    def model_ids(self) -> list[str]:
        return [m.id for m in self.services.catalog.models()]


class KeysPageHandler(KeyFormMixin, PageHandler):
    """GET: the user's keys (paginated) and the create form; POST: create, show the key once."""

    @tornado.web.authenticated
    async def get(self) -> None:
        new_key, new_doc = await self._take_new_key()
        await self.show(new_key=new_key, new_doc=new_doc)

    async def _take_new_key(self) -> tuple[str | None, dict | None]:
        """The key created by this browser's last POST, once (a refresh shows it no more)."""
        if not self.get_cookie(NEW_KEY_COOKIE):
            return None, None
        self.clear_cookie(NEW_KEY_COOKIE, path="/keys")
        value = self.get_signed_cookie(NEW_KEY_COOKIE, max_age_days=NEW_KEY_MINUTES / 1440)
        user_id, _, rest = (value or b"").decode(errors="replace").partition(":")
        key_id, _, raw = rest.partition(":")
        if not raw or user_id != str(self.current_user["_id"]):
            return None, None
        try:
            return raw, await self.services.keys.get(key_id, user_id=self.current_user["_id"])
        except GatewayError:  # revoked or gone meanwhile
            return None, None

    async def show(self, *, new_key: str | None = None, new_doc: dict | None = None, form: dict | None = None,
                   errors: dict | None = None, status: int = 200) -> None:
        uid, now, page = self.current_user["_id"], utcnow(), self.page_argument()
        shown, total = await self.services.keys.page_for_user(uid, limit=PAGE_SIZE, skip=(page - 1) * PAGE_SIZE)
        totals = await self.services.usage.totals_by_key(uid, key_ids=[d["_id"] for d in shown])
        if new_key:
            self.set_header("Cache-Control", "no-store")
        self.render_page("keys.html", status=status, keys=[key_view(d, totals.get(d["_id"]), now) for d in shown],
                         total=total, page=page, more=total > page * PAGE_SIZE, new_key=new_key,
                         new_doc=new_doc, form=form or {}, errors=errors or {}, model_ids=self.model_ids(),
                         name_max=KEY_NAME_MAX, min_date=(now.date() + dt.timedelta(days=1)).isoformat())

    @tornado.web.authenticated
    async def post(self) -> None:
        name = self.get_argument("name", "")
        limits, errors = self.limits_from_form()
        form = {"name": name, **limits}
        if not errors:
            try:
                raw, doc = await self.services.keys.create(self.current_user["_id"], name, **limits)
            except InvalidRequest as exc:
                errors = {exc.param or "form": exc.message}
            else:
                # Redirect after POST, so a refresh cannot create a second key.
                self.set_signed_cookie(NEW_KEY_COOKIE, f"{self.current_user['_id']}:{doc['_id']}:{raw}",
                                       expires_days=None, path="/keys")
                return self.redirect("/keys", status=303)
        await self.show(form=form, errors=errors, status=400)


class KeyPageHandler(KeyFormMixin, PageHandler):
    """GET: one key with its settings; POST action=rename|limits|freeze|unfreeze."""

    DONE = {"rename": "renamed", "limits": "limits saved", "freeze": "frozen: it refuses requests until unfrozen",
            "unfreeze": "unfrozen"}

    @tornado.web.authenticated
    async def get(self, key_id: str) -> None:
        await self.show(key_id)

    async def show(self, key_id: str, *, errors: dict | None = None, form: dict | None = None,
                   status: int = 200) -> None:
        uid = self.current_user["_id"]
        doc = await self.services.keys.get(key_id, user_id=uid)  # NotFound for anyone else's key
        totals = (await self.services.usage.totals_by_key(uid, key_ids=[doc["_id"]])).get(doc["_id"])
        self.render_page("key.html", status=status, key=key_view(doc, totals, utcnow()), errors=errors or {},
                         form=form or {}, model_ids=self.model_ids(), name_max=KEY_NAME_MAX,
                         min_date=(utcnow().date() + dt.timedelta(days=1)).isoformat())

    @tornado.web.authenticated
    async def post(self, key_id: str) -> None:
        action = self.get_argument("action", "")
        changes, errors, form = self.changes_from_form(action)
        if not errors:
            try:
                doc = await self.services.keys.update(key_id, user_id=self.current_user["_id"], **changes)
            except InvalidRequest as exc:
                errors = {exc.param or "form": exc.message}
            else:
                self.flash(f"Key “{doc['name']}” {self.DONE[action]}.")
                return self.redirect(f"/keys/{doc['_id']}")
        await self.show(key_id, errors=errors, form=form, status=400)


    def changes_from_form(self, action: str) -> tuple[dict, dict, dict]:
        """(the KeyService.update arguments, form errors, the form to re-show) for `action`."""
        if action not in self.DONE:
            raise InvalidRequest("Unknown action.")
        if action == "rename":
            name = self.get_argument("name", "")
            return {"name": name}, {}, {"name": name}
        if action == "limits":
            limits, errors = self.limits_from_form()
            return {"limits": limits}, errors, limits
        return {"frozen": action == "freeze"}, {}, {}


class KeyRevokePageHandler(PageHandler):
    """GET: "are you sure?"; POST: revoke for good (owner-checked)."""

    @tornado.web.authenticated
    async def get(self, key_id: str) -> None:
        doc = await self.services.keys.get(key_id, user_id=self.current_user["_id"])
        self.render_page("key_revoke.html", key=key_view(doc, None, utcnow()))

    @tornado.web.authenticated
    async def post(self, key_id: str) -> None:
        doc = await self.services.keys.update(key_id, user_id=self.current_user["_id"], revoked=True)
        self.flash(f"Key “{doc['name']}” ({doc['prefix']}) was revoked. Requests with it now fail with 401.")
        self.redirect("/keys")


routes = [
    (r"/keys/?", KeysPageHandler),
    (r"/keys/([^/]+)/revoke/?", KeyRevokePageHandler),
    (r"/keys/([^/]+)/?", KeyPageHandler),
]
