"""Named admin API tokens (`admin_tokens` collection, written only here).

Like API keys, a token is shown once at creation; only its SHA-256 hash and a display
prefix are stored. A revoked token opens nothing; each use records `last_used_at`.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from services.core.clock import utcnow
from services.core.errors import InvalidRequest, NotFound
from services.core.ids import as_object_id
from services.store.db import AFTER

TOKEN_PREFIX = "cla-"
NAME_MAX = 64


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class AdminTokenService:
    db: object

    async def create(self, name: object, *, created_by: str) -> tuple[str, dict]:
        """A new token named `name`: (the raw token, shown this once; its document)."""
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > NAME_MAX:
            raise InvalidRequest(f"name: a name of 1–{NAME_MAX} characters is required", param="name")
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        doc = {"name": name.strip(), "token_hash": _hash(raw), "prefix": raw[:8] + "…" + raw[-4:],
               "created_by": created_by, "created_at": utcnow(), "last_used_at": None, "revoked_at": None}
        doc["_id"] = (await self.db.admin_tokens.insert_one(doc)).inserted_id
        return raw, doc

    async def authenticate(self, raw: str) -> dict | None:
        """The live token's document (its use recorded), else None."""
        if not raw.startswith(TOKEN_PREFIX):
            return None
        return await self.db.admin_tokens.find_one_and_update(
            {"token_hash": _hash(raw), "revoked_at": None}, {"$set": {"last_used_at": utcnow()}},
            return_document=AFTER)

    async def list(self) -> list[dict]:
        return await self.db.admin_tokens.find({}, {"token_hash": 0}).sort("created_at", -1).to_list(None)

    async def revoke(self, token_id) -> dict:
        doc = await self.db.admin_tokens.find_one_and_update(
            {"_id": as_object_id(token_id), "revoked_at": None}, {"$set": {"revoked_at": utcnow()}},
            return_document=AFTER)
        if doc is None:
            raise NotFound("No such live admin token.")
        return doc
