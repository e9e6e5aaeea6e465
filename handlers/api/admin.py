"""Management API under /admin/api/… (JSON in, JSON out), for scripted set-up.

Authenticated only by `Authorization: Bearer <ADMIN_API_TOKEN>`; with no token configured
every route answers 401.
"""
from __future__ import annotations

import hmac

from handlers.base import ApiHandler
from services.billing.credits import parse_amount
from services.core.errors import AuthenticationFailed, InvalidRequest
from services.core.money import to_credits, to_micro

REASON_MAX = 500


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
           "held": to_credits(doc.get("held", 0)), "created_at": doc.get("created_at")}
    if keys is not None:
        out["keys"] = keys
    return out


class AdminApiHandler(ApiHandler):
    error_flavor = "openai"

    async def check_caller(self) -> None:
        token = self.services.settings.admin_api_token
        given = self.bearer_token()
        if not token or not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise AuthenticationFailed("Admin API: missing or wrong admin token.")

    async def user_with_keys(self, user: dict) -> dict:
        s = self.services
        totals = await s.usage.totals_by_key(user["_id"])  # every key's spend in one read
        keys = [key_json(k, totals.get(k["_id"], {}).get("credits", 0))
                for k in await s.keys.list_for_user(user["_id"])]
        return user_json(await s.users.get(user["_id"]), keys)


class UsersAdminApiHandler(AdminApiHandler):
    async def post(self) -> None:
        body = self.json_body()
        s = self.services
        credits = body.get("credits")
        if credits not in (None, 0, "0") and parse_amount(credits, param="credits") < 0:  # before the user exists
            raise InvalidRequest("credits: must not be negative", param="credits")
        user = await s.users.create(body.get("username"), body.get("password"), email=body.get("email"))
        if credits not in (None, 0, "0"):
            await s.billing.adjust(user["_id"], credits, kind="adjustment", note="initial credits")
        self.write_json(await self.user_with_keys(user), status=201)


class UserAdminApiHandler(AdminApiHandler):
    async def get(self, username: str) -> None:
        self.write_json(await self.user_with_keys(await self.services.users.by_username(username)))

    async def patch(self, username: str) -> None:
        body = self.json_body()
        if not isinstance(body.get("frozen"), bool):
            raise InvalidRequest("frozen: must be true or false", param="frozen")
        s = self.services
        user = await s.users.set_frozen((await s.users.by_username(username))["_id"], body["frozen"])
        s.keys.invalidate()
        self.write_json(await self.user_with_keys(user))


class UserCreditsAdminApiHandler(AdminApiHandler):
    async def post(self, username: str) -> None:
        body = self.json_body()
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX:
            raise InvalidRequest(f"reason: a short text (at most {REASON_MAX} characters) saying why is required",
                                 param="reason")
        user = await self.services.users.by_username(username)
        credits = await self.services.billing.adjust(user["_id"], body.get("amount"), note=reason.strip())
        self.write_json({"username": user["username"], "credits": to_credits(credits)})


class UserKeysAdminApiHandler(AdminApiHandler):
    async def post(self, username: str) -> None:
        body = self.json_body()
        user = await self.services.users.by_username(username)
        raw, doc = await self.services.keys.create(user["_id"], body.get("name"), credit_cap=body.get("credit_cap"),
                                                   expires_at=body.get("expires_at"),
                                                   allowed_models=body.get("allowed_models"), rpm=body.get("rpm"))
        self.write_json({**key_json(doc), "key": raw}, status=201)


class KeyAdminApiHandler(AdminApiHandler):
    async def patch(self, key_id: str) -> None:
        body = self.json_body()
        if "frozen" in body and not isinstance(body["frozen"], bool):
            raise InvalidRequest("frozen: must be true or false", param="frozen")
        doc = await self.services.keys.update(key_id, name=body.get("name"), frozen=body.get("frozen"),
                                              revoked=body.get("revoked") is True)
        self.write_json(key_json(doc))


class UsageAdminApiHandler(AdminApiHandler):
    async def get(self) -> None:
        s = self.services
        username = self.get_argument("username", None)
        user_id = (await s.users.by_username(username))["_id"] if username else None
        try:
            limit = min(max(int(self.get_argument("limit", "50")), 1), 1000)
        except ValueError:
            raise InvalidRequest("limit: must be an integer", param="limit") from None
        rows = await s.usage.recent(user_id=user_id, limit=limit)
        for row in rows:
            row["credits"] = to_credits(row.get("credits", 0))
            row.pop("hold", None)
        self.write_json({"object": "list", "data": rows})


class TopupCodesAdminApiHandler(AdminApiHandler):
    """POST /admin/api/topup-codes {"credits", "count"?, "note"?} → 201 {"codes": [...]}, shown once."""

    async def post(self) -> None:
        body = self.json_body()
        codes = await self.services.topup.generate(
            body.get("credits"), count=body.get("count", 1), note=body.get("note"), created_by="admin-api")
        self.write_json({"codes": codes, "credits": to_credits(to_micro(body["credits"])),
                         "note": (body.get("note") or "").strip()}, status=201)


routes = [
    (r"/admin/api/users/?", UsersAdminApiHandler),
    (r"/admin/api/users/([^/]+)/credits/?", UserCreditsAdminApiHandler),
    (r"/admin/api/users/([^/]+)/keys/?", UserKeysAdminApiHandler),
    (r"/admin/api/users/([^/]+)/?", UserAdminApiHandler),
    (r"/admin/api/keys/([^/]+)/?", KeyAdminApiHandler),
    (r"/admin/api/usage/?", UsageAdminApiHandler),
    (r"/admin/api/topup-codes/?", TopupCodesAdminApiHandler),
]

