"""Usage records (one per API request) and their daily rollups.

`usage` holds the raw records; `usage_daily` holds per (user, day, key, model) sums
maintained with `$inc` upserts, so dashboards never scan raw records.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.core.clock import utcnow
from services.core.ids import as_object_id
from services.core.types import TOKEN_FIELDS

# What the dashboard's request table shows (an inclusion projection keeps pages small).
TABLE_FIELDS = {"_id": 0, **{f: 1 for f in (
    "request_id", "key_name", "model", "endpoint", "stream", "status", "error", "total_tokens", "credits",
    "latency_ms", "ttft_ms", "created_at", *TOKEN_FIELDS)}}


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
        # One rollup per (user, day, key, model), addressed by _id: the upsert is an _id
        # lookup, not a match on four fields (a scan of the collection on the embedded store).
        group = {"user_id": doc["user_id"], "day": doc["day"], "key_id": doc["key_id"], "model": doc["model"]}
        await self.db.usage_daily.update_one(
            {"_id": "{user_id}:{day}:{key_id}:{model}".format(**group)},
            {"$inc": inc, "$setOnInsert": group}, upsert=True)

    async def record_abandoned(self, request_id: str, user_id, *, hold: int) -> None:
        """Record a request whose process stopped before it settled (its hold was released).

        Charged nothing and kept out of the rollups: its model and tokens are unknown."""
        now = utcnow()
        await self.db.usage.insert_one({
            "request_id": request_id, "user_id": user_id, "key_id": None, "model": None,
            "status": "abandoned", "credits": 0, "hold": hold, "total_tokens": 0,
            "error": "The gateway stopped before this request settled; its hold was released.",
            "created_at": now, "day": now.strftime("%Y-%m-%d")})

    @staticmethod
    def _query(user_id=None, key_id=None, model: str | None = None) -> dict:
        query: dict = {}
        if user_id is not None:
            query["user_id"] = as_object_id(user_id)
        if key_id is not None:
            query["key_id"] = as_object_id(key_id)
        if model:
            query["model"] = model
        return query

    async def recent(self, *, user_id=None, key_id=None, model: str | None = None,
                     limit: int = 50, skip: int = 0) -> list[dict]:
        """Newest usage records first, optionally filtered."""
        cursor = self.db.usage.find(self._query(user_id, key_id, model), {"_id": 0}).sort(
            "created_at", -1).skip(skip).limit(limit)
        return await cursor.to_list(limit)

    async def spent_by_key(self, key_id) -> int:
        """Micro-credits a key has spent to date (from the rollups)."""
        rows = await self.db.usage_daily.find({"key_id": as_object_id(key_id)}, {"credits": 1}).to_list(None)
        return sum(r.get("credits", 0) for r in rows)

    async def daily_by_model(self, user_id, *, since_day: str) -> list[dict]:
        """The user's rollups from `since_day` on, summed per (day, model): one row each with
        day, model, requests, total_tokens, credits (micro) and errors. Reads rollups only
        (at most days × keys × models small documents, summed here)."""
        rows = await self.db.usage_daily.find(
            {"user_id": as_object_id(user_id), "day": {"$gte": since_day}},
            {"_id": 0, "day": 1, "model": 1, "requests": 1, "total_tokens": 1, "credits": 1, "errors": 1},
        ).to_list(None)
        sums: dict[tuple[str, str], dict] = {}
        for r in rows:
            out = sums.setdefault((r["day"], r.get("model")), {
                "day": r["day"], "model": r.get("model"), "requests": 0, "total_tokens": 0, "credits": 0,
                "errors": 0})
            for name in ("requests", "total_tokens", "credits", "errors"):
                out[name] += r.get(name, 0)
        return list(sums.values())

    async def totals_by_key(self, user_id, *, key_ids: list | None = None) -> dict:
        """{key_id: {"requests", "total_tokens", "credits"}} to date for the user's keys (all,
        or those in `key_ids`), from one read of their rollups (no per-key queries), summed
        here like daily_by_model: one code path, fast on both stores."""
        query: dict = {"user_id": as_object_id(user_id)}
        if key_ids is not None:
            query["key_id"] = {"$in": [as_object_id(k) for k in key_ids]}
        rows = await self.db.usage_daily.find(
            query, {"_id": 0, "key_id": 1, "requests": 1, "total_tokens": 1, "credits": 1}).to_list(None)
        totals: dict = {}
        for r in rows:
            out = totals.setdefault(r["key_id"], {"requests": 0, "total_tokens": 0, "credits": 0})
            for name in ("requests", "total_tokens", "credits"):
                out[name] += r.get(name, 0)
        return totals

    async def page(self, user_id, *, key_id=None, model: str | None = None, limit: int = 50,
                   skip: int = 0) -> tuple[list[dict], bool]:
        """One page of the user's records, newest first, and whether an older page exists.

        Always filtered by owner: a key id of another user matches nothing. Fetches one row
        more than the page instead of counting every matching record.
        """
        cursor = self.db.usage.find(self._query(user_id, key_id, model), TABLE_FIELDS).sort("created_at", -1)
        rows = await cursor.skip(skip).limit(limit + 1).to_list(limit + 1)
        return rows[:limit], len(rows) > limit

    async def export(self, user_id, *, key_id=None, model: str | None = None, limit: int = 100_000):
        """Yield the user's records newest first (at most `limit`), streamed from one cursor."""
        cursor = self.db.usage.find(self._query(user_id, key_id, model), {"_id": 0, "hold": 0})
        cursor = cursor.sort("created_at", -1).limit(limit)
        async for doc in cursor:
            yield doc

    # ------------------------------------------------------------ admin views

    @staticmethod
    def admin_query(*, user_id=None, key_id=None, model: str | None = None, upstream: str | None = None,
                    status: str | None = None, since: dt.datetime | None = None,
                    until: dt.datetime | None = None) -> dict:
        """The raw-record query for the admin usage filters (status: "ok", "error" or a code)."""
        query = UsageService._query(user_id, key_id, model)
        if upstream:
            query["upstream"] = upstream
        if status == "ok":
            query["status"] = 200
        elif status == "error":
            query["status"] = {"$ne": 200}
        elif status:
            query["status"] = int(status) if status.isdigit() else status
        if since or until:
            query["created_at"] = {**({"$gte": since} if since else {}), **({"$lt": until} if until else {})}
        return query

    async def admin_page(self, query: dict, *, limit: int, skip: int = 0) -> tuple[list[dict], bool]:
        rows = await self.db.usage.find(query, {"_id": 0, "hold": 0}).sort("created_at", -1).skip(skip).limit(
            limit + 1).to_list(limit + 1)
        return rows[:limit], len(rows) > limit

    async def admin_totals(self, query: dict, *, cap: int = 100_000) -> dict:
        """Requests, tokens, credits (micro) and errors of the matching records (the newest
        `cap` of them; summed here, which both stores do alike)."""
        totals = {"requests": 0, "total_tokens": 0, "credits": 0, "errors": 0}
        cursor = self.db.usage.find(query, {"_id": 0, "total_tokens": 1, "credits": 1, "status": 1}).sort(
            "created_at", -1).limit(cap)
        async for r in cursor:
            totals["requests"] += 1
            totals["total_tokens"] += r.get("total_tokens", 0)
            totals["credits"] += r.get("credits", 0)
            totals["errors"] += r.get("status") != 200
        return totals

    async def admin_export(self, query: dict, *, limit: int = 100_000):
        cursor = self.db.usage.find(query, {"_id": 0, "hold": 0}).sort("created_at", -1).limit(limit)
        async for doc in cursor:
            yield doc

    async def totals_for_keys(self, key_ids: list) -> dict:
        """{key_id: micro-credits spent} for any users' keys, from one read of their rollups."""
        rows = await self.db.usage_daily.find({"key_id": {"$in": [as_object_id(k) for k in key_ids]}},
                                              {"_id": 0, "key_id": 1, "credits": 1}).to_list(None)
        out: dict = {}
        for r in rows:
            out[r["key_id"]] = out.get(r["key_id"], 0) + r.get("credits", 0)
        return out

    async def overview(self, *, since_day: str) -> dict:
        """Every user's rollups from `since_day` on: per-day and per-model sums and the top
        users by credits."""
        rows = await self.db.usage_daily.find(
            {"day": {"$gte": since_day}},
            {"_id": 0, "day": 1, "model": 1, "user_id": 1, "requests": 1, "total_tokens": 1, "credits": 1,
             "errors": 1}).to_list(None)
        by_day: dict = {}
        by_model: dict = {}
        by_user: dict = {}
        for r in rows:
            for table, name in ((by_day, r["day"]), (by_model, r.get("model") or "unknown"), (by_user, r["user_id"])):
                out = table.setdefault(name, {"requests": 0, "total_tokens": 0, "credits": 0, "errors": 0})
                for f in out:
                    out[f] += r.get(f, 0)
        top = lambda table: sorted(table.items(), key=lambda kv: (-kv[1]["credits"], str(kv[0])))[:10]  # noqa: E731
        return {"rows": rows, "by_day": by_day, "top_models": top(by_model), "top_users": top(by_user)}

    async def upstream_health(self, *, since: dt.datetime, cap: int = 20_000) -> list[dict]:
        """Per upstream over the newest `cap` records since `since`: requests, error rate and
        latency percentiles (p50, p95, p99, in ms)."""
        cursor = self.db.usage.find({"created_at": {"$gte": since}},
                                    {"_id": 0, "upstream": 1, "status": 1, "latency_ms": 1}).sort(
            "created_at", -1).limit(cap)
        groups: dict = {}
        async for r in cursor:
            g = groups.setdefault(r.get("upstream") or "unknown", {"latencies": [], "errors": 0, "requests": 0})
            g["requests"] += 1
            g["errors"] += r.get("status") != 200
            if isinstance(r.get("latency_ms"), (int, float)):
                g["latencies"].append(r["latency_ms"])
        out = []
        for name, g in sorted(groups.items()):
            lat = sorted(g["latencies"])
            pct = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None)  # noqa: E731
            out.append({"upstream": name, "requests": g["requests"], "errors": g["errors"],
                        "error_rate": round(g["errors"] / g["requests"], 4) if g["requests"] else 0.0,
                        "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99)})
        return out
