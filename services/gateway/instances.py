"""Process leases: which gateway processes are alive, so recovery releases only the holds
of processes that died.

Each process registers an instance document in `instances` (this service is its only
writer): `_id` = the instance id carried by every hold entry it places, `expires_at` =
its lease, renewed every third of `lease_seconds`. A hold entry whose instance has no
lease in force belongs to a process that died (or stopped without settling it), and the
periodic recovery of any live process releases it, exactly once (the release is a
conditional update on the entry). Entries without an instance (placed by an older
version) are released by age (HOLD_STALE_SECONDS) as before.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field

from services.core.clock import utcnow
from services.store.db import PyMongoError

log = logging.getLogger(__name__)


def new_instance_id() -> str:
    """A fresh instance id: no spaces (hold entries are space-separated), unique per start."""
    return f"{socket.gethostname().replace(' ', '_')[:32]}.{os.getpid()}.{secrets.token_hex(4)}"


@dataclass
class InstanceService:
    db: object
    lease_seconds: float = 30.0
    instance_id: str = field(default_factory=new_instance_id)
    _task: asyncio.Task | None = None

    async def register(self) -> None:
        """Take this process's lease (call before placing any hold)."""
        now = utcnow()
        await self.db.instances.update_one(
            {"_id": self.instance_id},
            {"$set": {"expires_at": now + dt.timedelta(seconds=self.lease_seconds), "renewed_at": now},
             "$setOnInsert": {"started_at": now, "host": socket.gethostname(), "pid": os.getpid()}},
            upsert=True)

    async def alive(self) -> set[str]:
        """Ids of the instances whose lease is in force."""
        docs = await self.db.instances.find({"expires_at": {"$gt": utcnow()}}, {"_id": 1}).to_list(None)
        return {d["_id"] for d in docs} | {self.instance_id}

    async def forget_expired(self) -> None:
        """Delete instance documents whose lease ran out long ago (their holds are released)."""
        await self.db.instances.delete_many(
            {"expires_at": {"$lt": utcnow() - dt.timedelta(seconds=10 * self.lease_seconds)}})

    def start(self, billing, hold_stale_seconds: float) -> None:
        """Renew the lease and release dead instances' holds in the background."""
        self._task = asyncio.ensure_future(self._run(billing, hold_stale_seconds))

    async def _run(self, billing, hold_stale_seconds: float) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.register()
                ticks += 1
                if ticks % 3 == 0:  # recovery once per lease
                    await self.recover(billing, hold_stale_seconds)
            except PyMongoError as exc:
                log.warning("lease renewal failed (%s); retrying", type(exc).__name__)
            except Exception:
                log.exception("lease renewal or hold recovery failed")

    async def recover(self, billing, hold_stale_seconds: float) -> int:
        """Release the holds of dead instances (and instance-less holds older than
        `hold_stale_seconds`); returns how many."""
        released = await billing.release_stale_holds(
            older_than=utcnow() - dt.timedelta(seconds=hold_stale_seconds), alive=await self.alive())
        await self.forget_expired()
        return released

    async def stop(self) -> None:
        """Give up the lease: every hold of this process is settled by now."""
        if self._task is not None:
            self._task.cancel()
        try:
            await self.db.instances.delete_one({"_id": self.instance_id})
        except PyMongoError as exc:
            log.warning("could not give up the lease (%s); it expires by itself", type(exc).__name__)
