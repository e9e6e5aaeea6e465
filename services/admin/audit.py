"""The audit trail (`audit` collection, written only here): one record per admin action.

    {actor, action, target, before, after, at}

`actor` names who acted ("alice" for a signed-in admin, "token:<name>" for a named admin
API token, "token:ADMIN_API_TOKEN" for the configured one); `before`/`after` hold the
changed fields only, never secrets.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.core.clock import utcnow
from services.store.db import literal_pattern

AUDIT_PAGE_MAX = 500


@dataclass
class AuditService:
    db: object

    async def record(self, actor: str, action: str, target: str | None = None, *,
                     before: dict | None = None, after: dict | None = None) -> None:
        """Append one record; never raises for the caller's data (values are stored as given)."""
        await self.db.audit.insert_one({"actor": actor, "action": action, "target": target,
                                        "before": before, "after": after, "at": utcnow()})

    async def list(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
                   limit: int = 50, skip: int = 0) -> list[dict]:
        """Newest records first, optionally filtered by exact actor, action prefix or target."""
        query: dict = {}
        if actor:
            query["actor"] = actor
        if action:
            query["action"] = {"$regex": "^" + literal_pattern(action)}
        if target:
            query["target"] = target
        cursor = self.db.audit.find(query).sort("at", -1).skip(skip).limit(min(limit, AUDIT_PAGE_MAX))
        return await cursor.to_list(None)
