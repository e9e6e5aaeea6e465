"""Login throttling per (account, address), per account and per address, kept in MongoDB
(`login_attempts`).

State lives in the database, not in process memory, so every gateway process behind a
load balancer sees the same counters. One document per key
    {key: "pair:<username> <address>" | "account:<username>" | "ip:<address>" | "signup-ip:<address>",
     count, window_start}
counts attempts in a fixed window that starts at the first one.

A log-in attempt is *reserved* before the password is checked: each counter is raised by
one conditional `find_one_and_update` that only matches while the count is below its
limit, so however many guesses arrive at once, at most the limit of them reach the
(slow) password check. A wrong password leaves its reservation in place as a failure; a
right one gives it back.

The (account, address) limit is the tight one. The account-wide limit is loose, so that
an attacker guessing from a handful of addresses cannot lock the owner out: the owner,
from their own address, only meets it after the attacker has spent it from many.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from services.core.clock import as_utc, utcnow
from services.core.errors import RateLimited
from services.store.db import DuplicateKeyError


@dataclass(frozen=True)
class LoginAttempt:
    """A reserved log-in attempt: the counters it holds one unit of."""

    username: str
    keys: tuple[str, ...]


@dataclass
class ThrottleService:
    """Reserve log-in and sign-up attempts and refuse more once a limit is reached."""

    db: object
    max_per_account: int = 100   # attempts on one username from all addresses per window
    max_per_ip: int = 20         # attempts from one address over all usernames per window
    max_signups_per_ip: int = 10  # accounts created from one address per window
    window_seconds: int = 15 * 60
    max_per_account_address: int = 5  # attempts on one username from one address per window

    async def begin_login(self, username: str, ip: str) -> LoginAttempt:
        """Reserve one attempt on the account from this address, atomically, before the
        password is checked. Raises RateLimited (with Retry-After) if a limit is reached;
        then nothing stays reserved."""
        account = _account(username)
        limits = [(f"pair:{account} {ip}", self.max_per_account_address,
                   "Too many failed log-ins for this account from your network."),
                  (f"ip:{ip}", self.max_per_ip, "Too many failed log-ins from your network."),
                  (f"account:{account}", self.max_per_account, "Too many failed log-ins for this account.")]
        taken: list[str] = []
        for key, limit, message in limits:
            wait = await self._reserve(key, limit)
            if wait is not None:
                await self._release(taken)
                minutes = max(1, math.ceil(wait / 60))
                raise RateLimited(f"{message} Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                                  headers={"Retry-After": str(max(1, math.ceil(wait)))})
            taken.append(key)
        return LoginAttempt(account, tuple(taken))

    async def login_failed(self, attempt: LoginAttempt) -> None:
        """The password was wrong: the reservation stays, counted as a failure."""

    async def login_succeeded(self, attempt: LoginAttempt) -> None:
        """The password was right: clear this address's failures on the account and give
        back the attempt's place in the account-wide and address-wide counts."""
        pair, *rest = attempt.keys
        await self.db.login_attempts.delete_many({"key": pair})
        await self._release(rest)

    async def begin_signup(self, ip: str) -> None:
        """Reserve one account creation from this address, atomically, before the account is
        made (parallel sign-ups cannot outrun the limit). Raises RateLimited if the address
        created too many accounts in the window."""
        wait = await self._reserve(f"signup-ip:{ip}", self.max_signups_per_ip)
        if wait is not None:
            minutes = max(1, math.ceil(wait / 60))
            raise RateLimited(f"Too many accounts were created from your network. Try again in {minutes} "
                              f"minute{'s' if minutes != 1 else ''}.", headers={"Retry-After": str(math.ceil(wait))})

    async def signup_failed(self, ip: str) -> None:
        """No account was made after all: give the reservation back."""
        await self._release([f"signup-ip:{ip}"])

    def _wait(self, doc: dict) -> float:
        """Seconds until the document's window ends (≤ 0: it has ended)."""
        ends = as_utc(doc["window_start"]) + dt.timedelta(seconds=self.window_seconds)
        return (ends - utcnow()).total_seconds()

    async def _reserve(self, key: str, limit: int | None) -> float | None:
        """Add one to the key's count in its current window if the count is below `limit`
        (None: no limit), opening a new window if none is open. Atomic per key. Returns
        None when counted, else the seconds until the full window ends."""
        if limit is not None and limit < 1:  # a limit of 0 allows nothing, not one per window
            return float(self.window_seconds)
        now = utcnow()
        cutoff = now - dt.timedelta(seconds=self.window_seconds)
        below = {} if limit is None else {"count": {"$lt": limit}}
        for _ in range(3):
            # No projection on find_one_and_update: FerretDB does not support one there.
            if await self.db.login_attempts.find_one_and_update(
                    {"key": key, "window_start": {"$gt": cutoff}, **below}, {"$inc": {"count": 1}}):
                return None
            # No open window with room: restart an expired window, or open the first one.
            if await self.db.login_attempts.find_one_and_update(
                    {"key": key, "window_start": {"$lte": cutoff}},
                    {"$set": {"count": 1, "window_start": now}}):
                return None
            doc = await self.db.login_attempts.find_one({"key": key})
            if doc is None:
                try:
                    await self.db.login_attempts.insert_one({"key": key, "count": 1, "window_start": now})
                    return None
                except DuplicateKeyError:  # another request opened the window first: count in it
                    continue
            if limit is not None and doc.get("count", 0) >= limit and (wait := self._wait(doc)) > 0:
                return wait
        return 1.0  # the window kept changing under us: refuse this one rather than let it through

    async def _release(self, keys: list[str]) -> None:
        for key in keys:
            await self.db.login_attempts.update_one({"key": key, "count": {"$gt": 0}}, {"$inc": {"count": -1}})


def _account(username: str) -> str:
    return username.strip().lower()
