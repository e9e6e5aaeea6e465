"""Login throttling per account and per client IP, kept in MongoDB (`login_attempts`).

State lives in the database, not in process memory, so every gateway process behind a
load balancer sees the same counters. One document per key
    {key: "account:<username>" | "ip:<address>" | "signup-ip:<address>", count, window_start}
counts failures in a fixed window that starts at the first failure.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from services.core.clock import as_utc, utcnow
from services.core.errors import RateLimited
from services.store.db import AFTER, DuplicateKeyError


@dataclass
class ThrottleService:
    """Count failed logins (and sign-ups) and refuse more once a limit is reached."""

    db: object
    max_per_account: int = 5     # failed logins for one username per window
    max_per_ip: int = 20         # failed logins from one address per window
    max_signups_per_ip: int = 10  # accounts created from one address per window
    window_seconds: int = 15 * 60

    async def check_login(self, username: str, ip: str) -> None:
        """Raise RateLimited (with Retry-After) if this account or address is locked."""
        await self._check(f"account:{username.strip().lower()}", self.max_per_account,
                          "Too many failed log-ins for this account.")
        await self._check(f"ip:{ip}", self.max_per_ip, "Too many failed log-ins from your network.")

    async def login_failed(self, username: str, ip: str) -> None:
        """Count one failed login against the account and the address."""
        await self._hit(f"account:{username.strip().lower()}")
        await self._hit(f"ip:{ip}")

    async def login_succeeded(self, username: str) -> None:
        """Clear the account's failures (the address keeps its count until the window ends)."""
        await self.db.login_attempts.delete_many({"key": f"account:{username.strip().lower()}"})

    async def check_signup(self, ip: str) -> None:
        """Raise RateLimited if this address created too many accounts in the window."""
        await self._check(f"signup-ip:{ip}", self.max_signups_per_ip,
                          "Too many accounts were created from your network.")

    async def signed_up(self, ip: str) -> None:
        """Count one account created from this address."""
        await self._hit(f"signup-ip:{ip}")

    async def _check(self, key: str, limit: int, message: str) -> None:
        doc = await self.db.login_attempts.find_one({"key": key})
        if doc is None or doc.get("count", 0) < limit:
            return
        ends = as_utc(doc["window_start"]) + dt.timedelta(seconds=self.window_seconds)
        wait = (ends - utcnow()).total_seconds()
        if wait <= 0:
            return
        minutes = max(1, math.ceil(wait / 60))
        raise RateLimited(f"{message} Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                          headers={"Retry-After": str(math.ceil(wait))})

    async def _hit(self, key: str) -> int:
        """Add one to the key's count in the current window; returns the new count."""
        now = utcnow()
        cutoff = now - dt.timedelta(seconds=self.window_seconds)
        for _ in range(2):
            doc = await self.db.login_attempts.find_one_and_update(
                {"key": key, "window_start": {"$gt": cutoff}}, {"$inc": {"count": 1}}, return_document=AFTER)
            if doc is not None:
                return doc["count"]
            try:  # no window open (or it expired): start a new one
                await self.db.login_attempts.update_one(
                    {"key": key}, {"$set": {"count": 1, "window_start": now}}, upsert=True)
                return 1
            except DuplicateKeyError:  # another process opened the window first: count in it
                continue
        return 1
