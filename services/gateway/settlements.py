"""Settlements the database could not take, kept in memory and retried until they land.

When the database goes away after the upstream has answered, the tokens were used and
must be charged: the settlement is kept here (and logged) and retried with exponential
backoff (0.5 s doubling to 30 s) until it is written. `BillingService.resettle` makes
each retry safe: it settles only while the hold entry is still in the user document, so
a settlement whose first attempt did land is never charged twice. The count is a metric
(`cheaplm_pending_settlements`); a process stopped while some are pending logs each one.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from services.store.db import PyMongoError

log = logging.getLogger(__name__)


@dataclass
class PendingSettlements:
    billing: object  # BillingService
    first_delay: float = 0.5
    max_delay: float = 30.0
    _pending: list = field(default_factory=list)  # [(hold, record)]
    _task: asyncio.Task | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def keep(self, hold, record, exc: BaseException) -> None:
        """Keep one settlement that failed with `exc` (a database error) for retrying."""
        log.error("settlement of %s (user %s, %s tokens) not written (%s); kept for retry",
                  hold.request_id, hold.principal.user_id, record.usage.total, type(exc).__name__)
        self._pending.append((hold, record))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._retry())

    async def _retry(self) -> None:
        delay = self.first_delay
        while self._pending:
            await asyncio.sleep(delay)
            if await self.retry_once():
                delay = self.first_delay
            else:
                delay = min(delay * 2, self.max_delay)

    async def retry_once(self) -> bool:
        """Try every pending settlement once; True if all of them landed."""
        for item in list(self._pending):
            hold, record = item
            try:
                await self.billing.resettle(hold, record)
            except PyMongoError as exc:
                log.warning("settlement of %s still pending (%s)", hold.request_id, type(exc).__name__)
                return False
            self._pending.remove(item)
            log.warning("pending settlement of %s written", hold.request_id)
        return True

    async def stop(self) -> None:
        """Try once more, then log what is left (the hold stays in the database, where the
        lease recovery of another or the next process releases it)."""
        if self._task is not None:
            self._task.cancel()
        if self._pending:
            await self.retry_once()
        for hold, record in self._pending:
            log.error("settlement of %s lost at shutdown: %s tokens not charged to user %s",
                      hold.request_id, record.usage.total, hold.principal.user_id)
