"""Management API under /admin/api/… (JSON in, JSON out): everything the /admin pages do.

Authenticated by `Authorization: Bearer <token>`: the configured ADMIN_API_TOKEN or a named
admin API token made on /admin/tokens. Every change writes an audit record naming the token.
"""
from __future__ import annotations

import hmac

from handlers.base import ApiHandler
from services.admin.users import check_rpm
from services.billing.credits import parse_amount
from services.core.errors import AuthenticationFailed, InvalidRequest
from services.core.money import to_credits, to_micro


def key_json(doc: dict, spent: int | None = None) -> dict:
    out = {"id": str(doc["_id"]), "name": doc["name"], "prefix": doc["prefix"], "frozen": doc.get("frozen", False),
           "created_at": doc.get("created_at"), "last_used_at": doc.get("last_used_at"),
           "credit_cap": to_credits(doc["credit_cap"]) if doc.get("credit_cap") is not None else None,
           "expires_at": doc.get("expires_at"), "allowed_models": doc.get("allowed_models") or [],
           "rpm": doc.get("rpm") or 0}
    if spent is not None:
        out["credits_used"] = to_credits(spent)
    return out


def user_json(doc: dict, keys: list[dict] | None = None) -> dict:
    out = {"id": str(doc["_id"]), "username": doc["username"], "email": doc.get("email"),
           "role": doc.get("role", "user"), "frozen": doc.get("frozen", False),
           "credits": to_credits(doc.get("balance", 0) + doc.get("held", 0)),
           "held": to_credits(doc.get("held", 0)), "rpm": doc.get("rpm", 0), "created_at": doc.get("created_at")}
    if keys is not None:
        out["keys"] = keys
    return out


class AdminApiHandler(ApiHandler):
    error_flavor = "openai"
    actor: str = ""

    async def check_caller(self) -> None:
        token = self.services.settings.admin_api_token
        given = self.bearer_token()
        if given and token and hmac.compare_digest(given.encode(), token.encode()):
            self.actor = "token:ADMIN_API_TOKEN"
            return
        named = await self.services.admin_tokens.authenticate(given) if given else None
        if named is None:
            raise AuthenticationFailed("Admin API: missing or wrong admin token.")
        self.actor = f"token:{named['name']}"

    async def audit(self, action: str, target: str | None = None, *, before: dict | None = None,
                    after: dict | None = None) -> None:
        await self.services.audit.record(self.actor, action, target, before=before, after=after)

    def int_argument(self, name: str, default: int, *, low: int, high: int) -> int:
        """An integer query parameter within [low, high]; raises InvalidRequest naming it."""
        raw = self.get_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidRequest(f"{name}: must be an integer", param=name) from None
        if not low <= value <= high:
            raise InvalidRequest(f"{name}: must be from {low} to {high}", param=name)
        return value

    async def user_with_keys(self, user: dict) -> dict:
        s = self.services
        totals = await s.usage.totals_by_key(user["_id"])  # every key's spend in one read
        keys = [key_json(k, totals.get(k["_id"], {}).get("credits", 0))
                for k in await s.keys.list_for_user(user["_id"])]
        return user_json(await s.users.get(user["_id"]), keys)


class UsersAdminApiHandler(AdminApiHandler):
    async def get(self) -> None:
        """?q= (name or email contains), sort=created|balance|name, limit=1..200, skip=."""
        sort = self.get_argument("sort", "created")
        if sort not in ("created", "balance", "name"):
            raise InvalidRequest("sort: must be created, balance or name", param="sort")
        limit = self.int_argument("limit", 50, low=1, high=200)
        skip = self.int_argument("skip", 0, low=0, high=10_000_000)
        docs, total = await self.services.users.search(self.get_argument("q", ""), sort=sort, limit=limit, skip=skip)
        self.write_json({"object": "list", "total": total, "data": [user_json(d) for d in docs]})

    async def post(self) -> None:
        body = self.json_body()
        s = self.services
        credits = body.get("credits")
        if credits not in (None, 0, "0") and parse_amount(credits, param="credits") < 0:  # before the user exists
            raise InvalidRequest("credits: must not be negative", param="credits")
        user = await s.users.create(body.get("username"), body.get("password"), email=body.get("email"))
        if credits not in (None, 0, "0"):
            await s.billing.adjust(user["_id"], credits, kind="adjustment", note="initial credits")
        await self.audit("user.create", user["username"], after={"credits": credits or 0})
        self.write_json(await self.user_with_keys(user), status=201)


class UserAdminApiHandler(AdminApiHandler):
    async def get(self, username: str) -> None:
        self.write_json(await self.user_with_keys(await self.services.users.by_username(username)))

    async def patch(self, username: str) -> None:
        """{"frozen"?: bool, "role"?: "admin"|"user", "password"?: str, "rpm"?: int}"""
        body = self.json_body()
        if "frozen" in body and not isinstance(body["frozen"], bool):
            raise InvalidRequest("frozen: must be true or false", param="frozen")
        if not {"frozen", "role", "password", "rpm"} & set(body):
            raise InvalidRequest("frozen: give at least one of frozen, role, password, rpm", param="frozen")
        if "rpm" in body:
            check_rpm(body["rpm"])
        act, user = self.services.admin_users, await self.services.users.by_username(username)
        for name, change in (("role", act.set_role), ("password", act.set_password), ("rpm", act.set_rpm),
                             ("frozen", act.set_frozen)):
            if name in body:
                user = await change(self.actor, user, body[name]) or user
        self.write_json(await self.user_with_keys(await self.services.users.by_username(username)))


class UserCreditsAdminApiHandler(AdminApiHandler):
    async def post(self, username: str) -> None:
        body = self.json_body()
        user = await self.services.users.by_username(username)
        credits = await self.services.admin_users.adjust_credits(self.actor, user, body.get("amount"),
                                                                 body.get("reason"))
        self.write_json({"username": user["username"], "credits": to_credits(credits)})


class UserResetLinkAdminApiHandler(AdminApiHandler):
    async def post(self, username: str) -> None:
        """A one-time password-reset link for the user (valid 24 h), shown once."""
        user = await self.services.users.by_username(username)
        token = await self.services.admin_users.reset_link_token(self.actor, user)
        base = self.services.settings.public_base_url.rstrip("/") or f"{self.request.protocol}://{self.request.host}"
        self.write_json({"username": user["username"], "url": f"{base}/reset/{token}"}, status=201)


class UserKeysAdminApiHandler(AdminApiHandler):
    async def post(self, username: str) -> None:
        body = self.json_body()
        user = await self.services.users.by_username(username)
        raw, doc = await self.services.keys.create(user["_id"], body.get("name"), credit_cap=body.get("credit_cap"),
                                                   expires_at=body.get("expires_at"),
                                                   allowed_models=body.get("allowed_models"), rpm=body.get("rpm"))
        await self.audit("key.create", str(doc["_id"]), after={"user": user["username"], "name": doc["name"]})
        self.write_json({**key_json(doc), "key": raw}, status=201)


class KeyAdminApiHandler(AdminApiHandler):
    async def patch(self, key_id: str) -> None:
        body = self.json_body()
        if "frozen" in body and not isinstance(body["frozen"], bool):
            raise InvalidRequest("frozen: must be true or false", param="frozen")
        before = key_json(await self.services.keys.get(key_id))
        doc = await self.services.keys.update(key_id, name=body.get("name"), frozen=body.get("frozen"),
                                              revoked=body.get("revoked") is True)
        after = key_json(doc) if doc else {}
        changed = [k for k in ("name", "frozen") if before.get(k) != after.get(k)]
        await self.audit("key.revoke" if body.get("revoked") is True else "key.update", key_id,
                         before={k: before.get(k) for k in changed}, after={k: after.get(k) for k in changed})
        self.write_json(key_json(doc))


class TopupCodesAdminApiHandler(AdminApiHandler):
    """POST /admin/api/topup-codes {"credits", "count"?, "note"?, "expires_at"?} → 201 {"codes": [...]},
    shown once. (GET, the listing, is handlers/api/admin_ops.py's.)"""

    async def post(self) -> None:
        body = self.json_body()
        codes = await self.services.topup.generate(
            body.get("credits"), count=body.get("count", 1), note=body.get("note"), created_by=self.actor,
            expires_at=body.get("expires_at"))
        await self.audit("topup.generate", None, after={"credits": body["credits"], "count": len(codes),
                                                         "note": (body.get("note") or "").strip()})
        self.write_json({"codes": codes, "credits": to_credits(to_micro(body["credits"])),
                         "note": (body.get("note") or "").strip()}, status=201)


def token_json(doc: dict) -> dict:
    return {"id": str(doc["_id"]), "name": doc["name"], "prefix": doc["prefix"], "created_by": doc.get("created_by"),
            "created_at": doc.get("created_at"), "last_used_at": doc.get("last_used_at"),
            "revoked_at": doc.get("revoked_at")}


class TokensAdminApiHandler(AdminApiHandler):
    async def get(self) -> None:
        self.write_json({"object": "list", "data": [token_json(d) for d in await self.services.admin_tokens.list()]})

    async def post(self) -> None:
        raw, doc = await self.services.admin_tokens.create(self.json_body().get("name"), created_by=self.actor)
        await self.audit("token.create", str(doc["_id"]), after={"name": doc["name"]})
        self.write_json({**token_json(doc), "token": raw}, status=201)


class TokenAdminApiHandler(AdminApiHandler):
    async def delete(self, token_id: str) -> None:
        doc = await self.services.admin_tokens.revoke(token_id)
        await self.audit("token.revoke", token_id, before={"name": doc["name"]})
        self.write_json(token_json(doc))


def audit_json(doc: dict) -> dict:
    return {"id": str(doc["_id"]), "actor": doc["actor"], "action": doc["action"], "target": doc.get("target"),
            "before": doc.get("before"), "after": doc.get("after"), "at": doc["at"]}


class AuditAdminApiHandler(AdminApiHandler):
    async def get(self) -> None:
        """?actor=, action= (prefix, e.g. "user."), target=, limit=1..500, skip=."""
        rows = await self.services.audit.list(
            actor=self.get_argument("actor", None), action=self.get_argument("action", None),
            target=self.get_argument("target", None), limit=self.int_argument("limit", 50, low=1, high=500),
            skip=self.int_argument("skip", 0, low=0, high=10_000_000))
        self.write_json({"object": "list", "data": [audit_json(d) for d in rows]})


routes = [
    (r"/admin/api/tokens/?", TokensAdminApiHandler),
    (r"/admin/api/tokens/([^/]+)/?", TokenAdminApiHandler),
    (r"/admin/api/audit/?", AuditAdminApiHandler),
    (r"/admin/api/users/?", UsersAdminApiHandler),
    (r"/admin/api/users/([^/]+)/credits/?", UserCreditsAdminApiHandler),
    (r"/admin/api/users/([^/]+)/keys/?", UserKeysAdminApiHandler),
    (r"/admin/api/users/([^/]+)/reset-link/?", UserResetLinkAdminApiHandler),
    (r"/admin/api/users/([^/]+)/?", UserAdminApiHandler),
    (r"/admin/api/keys/([^/]+)/?", KeyAdminApiHandler),
]

