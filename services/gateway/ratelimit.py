"""Per-key request rate limits, shared by every gateway process through MongoDB.

A fixed one-minute window per key, counted in `rate_limits` (`_id` = "<key id>:<minute>",
expired by a TTL index). While a key is far below its limit, each process counts its
requests in memory and adds them to the shared count once a second (one `$inc` per key
instead of one per request), at most 5% of the limit at a time; once the shared count
plus the local one reaches half the limit, every request is counted in MongoDB before it
is let through; so is every request that arrives while one of its process's additions is
in flight (a burst sees no stale count). So one process enforces the limit exactly, and N
processes let through at most (N − 1) × 5% more in a minute (requests another process had
not yet shared); tests/test_processes.py checks it with 3 processes and a burst of 90.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field

from services.core.clock import Clock
from services.core.errors import RateLimited
from services.core.types import Principal
from services.store.db import AFTER

log = logging.getLogger(__name__)


@dataclass
class _Window:
    minute: int
    shared: int = 0   # the key's count in MongoDB (all processes) at the last sync
    pending: int = 0  # requests let through here and not yet added to the shared count
    adding: int = 0   # requests being added to the shared count right now (not in `shared` yet)


@dataclass
class RateLimitService:
    db: object
    default_rpm: int = 0  # 0 = no limit unless the key sets one
    sync_seconds: float = 1.0
    clock: Clock = field(default_factory=Clock)
    _windows: dict = field(default_factory=dict)  # key id -> _Window of the current minute
    _sync_timer: asyncio.TimerHandle | None = None
    _sync_task: asyncio.Task | None = None

    async def check(self, principal: Principal) -> None:
        """Count one request for the key; raise RateLimited (429, retry-after) past its limit."""
        limit = principal.rpm or self.default_rpm
        if not limit:
            return
        now = self.clock.time()
        minute = int(now // 60)
        window = self._windows.get(principal.key_id)
        if window is None or window.minute != minute:
            window = self._windows[principal.key_id] = _Window(minute)
        # In memory only while the shared count is known: with an addition in flight (a
        # burst), every request waits for its own count, or a burst would pass on a stale view.
        if (not window.adding and (window.shared + window.pending + 1) * 2 <= limit
                and window.pending < limit // 20):
            window.pending += 1
            if self._sync_timer is None:
                self._sync_timer = asyncio.get_running_loop().call_later(self.sync_seconds, self._sync_soon)
            return
        count, window.pending = window.pending + 1, 0
        window.adding += count  # concurrent requests here must see them before `_add` returns
        try:
            window.shared = max(window.shared, await self._add(principal.key_id, minute, count))
        finally:
            window.adding -= count
        if window.shared > limit:
            retry = max(1, int((minute + 1) * 60 - now + 0.999))
            raise RateLimited(f"Rate limit exceeded: this key may make {limit} requests per minute. "
                              f"Retry in {retry} s.", headers={"retry-after": str(retry)})

    async def sync(self) -> None:
        """Add every locally counted request to the shared counts (also run at shutdown)."""
        self._sync_timer = None
        minute = int(self.clock.time() // 60)
        for key_id, window in list(self._windows.items()):
            if window.minute != minute:
                del self._windows[key_id]  # that minute is over: its count no longer matters
            elif window.pending:
                count, window.pending = window.pending, 0
                try:
                    window.shared = max(window.shared, await self._add(key_id, minute, count))
                except Exception:
                    window.pending += count  # counted again at the next sync
                    raise

    def _sync_soon(self) -> None:
        # Held here: the event loop keeps only a weak reference to a task.
        self._sync_task = asyncio.ensure_future(self.sync())
        self._sync_task.add_done_callback(_log_failure)

    async def _add(self, key_id, minute: int, count: int) -> int:
        """Add `count` to the key's shared count for `minute`; returns the new total."""
        doc = await self.db.rate_limits.find_one_and_update(
            {"_id": f"{key_id}:{minute}"},
            {"$inc": {"n": count}, "$setOnInsert": {
                "expires_at": dt.datetime.fromtimestamp((minute + 2) * 60, dt.timezone.utc)}},
            upsert=True, return_document=AFTER)
        return doc["n"]


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("rate-limit sync failed: %r", task.exception())
