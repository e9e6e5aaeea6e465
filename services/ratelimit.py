"""Per-key request rate limits, counted in MongoDB so every gateway process shares them.

A fixed one-minute window per key: one `$inc` upsert on `rate_limits` (`_id` =
"<key id>:<minute>"), expired by a TTL index.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from services.db import AFTER
from services.errors import RateLimited
from services.keys import Principal


@dataclass
class RateLimitService:
    db: object
    default_rpm: int = 0  # 0 = no limit unless the key sets one

    async def check(self, principal: Principal) -> None:
        """Count one request for the key; raise RateLimited (429, retry-after) past its limit."""
        limit = principal.rpm or self.default_rpm
        if not limit:
            return
        now = time.time()
        window = int(now // 60)
        doc = await self.db.rate_limits.find_one_and_update(
            {"_id": f"{principal.key_id}:{window}"},
            {"$inc": {"n": 1}, "$setOnInsert": {
                "expires_at": dt.datetime.fromtimestamp((window + 2) * 60, dt.timezone.utc)}},
            upsert=True, return_document=AFTER)
        if doc["n"] > limit:
            retry = max(1, int((window + 1) * 60 - now + 0.999))
            raise RateLimited(f"Rate limit exceeded: this key may make {limit} requests per minute. "
                              f"Retry in {retry} s.", headers={"retry-after": str(retry)})
