"""Usage records (one per API request) and their daily rollups.

`usage` holds the raw records; `usage_daily` holds per (user, day, key, model) sums
maintained with `$inc` upserts, so dashboards never scan raw records.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.users import as_object_id

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass
class UsageService:
    """Write and read usage records and rollups."""

    db: object

    async def record(self, doc: dict) -> None:
        """Insert one usage record and fold it into the daily rollup.

        `doc` must carry user_id, key_id, model, created_at (UTC), credits (micro), the four
        token counts and total_tokens; `day` is derived here.
        """
        created: dt.datetime = doc["created_at"]
        doc["day"] = created.strftime("%Y-%m-%d")
        await self.db.usage.insert_one(doc)
        inc = {f: doc.get(f, 0) for f in TOKEN_FIELDS}
        inc.update(requests=1, credits=doc["credits"], total_tokens=doc["total_tokens"],
                   errors=0 if doc.get("status") == 200 else 1)
        await self.db.usage_daily.update_one(
            {"user_id": doc["user_id"], "day": doc["day"], "key_id": doc["key_id"], "model": doc["model"]},
            {"$inc": inc}, upsert=True)

    async def recent(self, *, user_id=None, key_id=None, model: str | None = None,
                     limit: int = 50, skip: int = 0) -> list[dict]:
        """Newest usage records first, optionally filtered."""
        query: dict = {}
        if user_id is not None:
            query["user_id"] = as_object_id(user_id)
        if key_id is not None:
            query["key_id"] = as_object_id(key_id)
        if model:
            query["model"] = model
        cursor = self.db.usage.find(query, {"_id": 0}).sort("created_at", -1).skip(skip).limit(limit)
        return await cursor.to_list(limit)

    async def count(self, *, user_id=None, key_id=None, model: str | None = None) -> int:
        query: dict = {}
        if user_id is not None:
            query["user_id"] = as_object_id(user_id)
        if key_id is not None:
            query["key_id"] = as_object_id(key_id)
        if model:
            query["model"] = model
        return await self.db.usage.count_documents(query)

    async def daily(self, user_id, *, since_day: str) -> list[dict]:
        """Rollup rows for the user from `since_day` (YYYY-MM-DD) on."""
        return await self.db.usage_daily.find(
            {"user_id": as_object_id(user_id), "day": {"$gte": since_day}}, {"_id": 0}).to_list(None)

    async def spent_by_key(self, key_id) -> int:
        """Micro-credits a key has spent to date (from the rollups)."""
        rows = await self.db.usage_daily.find({"key_id": as_object_id(key_id)}, {"credits": 1}).to_list(None)
        return sum(r.get("credits", 0) for r in rows)
