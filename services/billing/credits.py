"""Credits: holds before the upstream call, exact settlement after, and the ledger.

Every balance change is one conditional `find_one_and_update` on the user document
(no multi-document transactions). A user document carries
    balance  — micro-credits available to new requests
    held     — micro-credits reserved by requests in flight
    holds    — ["<request id> <amount> <unix time>[ <capped key id>][ @<instance id>]", …] one per
               request in flight; the instance is the process that placed it (its lease in
               `instances` says whether that process is alive: services/gateway/instances.py)
so "credits" as the user sees them are balance + held. Placing a hold moves micro-credits
from balance to held and pushes the entry; settling pulls the entry (matching the entry
makes settlement idempotent) and moves hold − cost back to balance, in the same update.
Entries are short strings, not sub-documents: the user document is rewritten on every
hold and settlement, and with many requests in flight sub-documents make each of those
updates several times dearer (figures in bench/PROFILE.md).
Credits move only through these conditional `find_one_and_update` calls. They ask for the
whole document (no projection): FerretDB, the real-server test tier, cannot project there.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bson import ObjectId

from services.accounts.keys import KeyService
from services.billing.usage import UsageService
from services.core.clock import utcnow
from services.core.errors import Conflict, InsufficientCredits, InvalidRequest, NotFound, PermissionDenied
from services.core.ids import as_object_id
from services.core.money import MICRO, fmt_credits, to_micro_checked
from services.core.types import Model, Principal
from services.store.db import AFTER, DuplicateKeyError, PyMongoError

if TYPE_CHECKING:
    from services.gateway.relay import CallRecord

log = logging.getLogger(__name__)

# The most credits one account may hold, and one adjustment may move (documented in the
# README); far inside MongoDB's 64-bit integers, counted in micro-credits.
MAX_CREDITS = 1_000_000_000

LOW_BALANCE = "Insufficient balance. Please top up your account."


def parse_amount(value: object, *, param: str = "amount") -> int:
    """Credits from untrusted input (JSON number or numeric text) → non-zero micro-credits.
    Raises InvalidRequest naming `param`."""
    try:
        amount = to_micro_checked(value, limit=MAX_CREDITS)
    except ValueError:
        raise InvalidRequest(f"{param} must be a number of credits from -{MAX_CREDITS:,} to {MAX_CREDITS:,}.",
                             param=param) from None
    if amount == 0:
        raise InvalidRequest(f"{param} must not be zero.", param=param)
    return amount


@dataclass
class Hold:
    """A reservation placed for one request; settled exactly once."""

    request_id: str
    principal: Principal
    model: Model
    amount: int
    key_capped: bool = False
    settled: bool = False
    entry: str = ""  # its entry in the user's `holds` array


def hold_entry(request_id: str, amount: int, at: float, capped_key_id=None, instance: str | None = None) -> str:
    entry = f"{request_id} {amount} {int(at)}"
    if capped_key_id is not None:
        entry = f"{entry} {capped_key_id}"
    return f"{entry} @{instance}" if instance else entry


def hold_instance(entry: str) -> str | None:
    """The id of the instance (process) that placed a hold entry; None for entries without one."""
    last = entry.rsplit(" ", 1)[-1]
    return last[1:] if last.startswith("@") else None


def parse_hold_entry(entry: str) -> tuple[str, int, dt.datetime, str | None]:
    """(request id, amount, placed at, id of the key whose credit cap it also holds) of an entry."""
    request_id, amount, at, *rest = entry.split(" ")
    key = [field for field in rest if not field.startswith("@")]
    return request_id, int(amount), dt.datetime.fromtimestamp(int(at), dt.timezone.utc), (key or [None])[0]


@dataclass
class Receipt:
    """What a settlement charged."""

    cost: int
    balance: int  # credits left (balance + held) right after settlement


@dataclass
class BillingService:
    """Holds, settlements, manual adjustments and the ledger."""

    db: object
    usage: UsageService
    keys: KeyService  # key credit caps move through the key service, which owns api_keys
    instance_id: str | None = None  # this process's lease (services/gateway/instances.py), put in its holds

    @staticmethod
    def hold_amount(model: Model, est_input_tokens: int, max_tokens: int) -> int:
        """Worst-case cost of a request: estimated input plus every allowed output token."""
        return model.hold_cost(min(est_input_tokens, model.max_input), max_tokens)

    async def hold(self, principal: Principal, model: Model, *, request_id: str,
                   est_input_tokens: int, max_tokens: int) -> Hold:
        """Reserve the request's worst-case cost, atomically, only if the balance covers it.

        Raises PermissionDenied (balance ≤ 0, frozen user) or InsufficientCredits (balance
        positive but below the hold, or the key's credit cap reached).
        """
        amount = self.hold_amount(model, est_input_tokens, max_tokens)
        hold = Hold(request_id, principal, model, amount)
        if principal.credit_cap is not None:
            if not await self.keys.reserve_cap(principal.key_id, amount):
                raise InsufficientCredits(
                    f"This API key's credit cap ({fmt_credits(principal.credit_cap)} credits) does not "
                    f"cover this request's hold of {fmt_credits(amount)} credits. Raise the key's cap "
                    f"or lower max_tokens.", code="key_credit_cap")
            hold.key_capped = True
        hold.entry = hold_entry(request_id, amount, time.time(), principal.key_id if hold.key_capped else None,
                                instance=self.instance_id)
        placed = await self.db.users.find_one_and_update(
            {"_id": principal.user_id, "frozen": {"$ne": True}, "balance": {"$gte": amount}},
            {"$inc": {"balance": -amount, "held": amount}, "$push": {"holds": hold.entry}})
        if placed is None:
            if hold.key_capped:
                await self.keys.refund_cap(principal.key_id, amount)
            await self._refuse(principal, amount)
        return hold

    async def check_standing(self, principal: Principal) -> None:
        """Raise PermissionDenied, as a hold would, if the user is frozen or has no credits
        left (for calls that are not billed but must not be open to such accounts)."""
        user = await self.db.users.find_one({"_id": principal.user_id}, {"balance": 1, "frozen": 1})
        if user is None or user.get("frozen"):
            raise PermissionDenied("This account is frozen.")
        if user["balance"] <= 0:
            raise PermissionDenied(LOW_BALANCE)

    async def _refuse(self, principal: Principal, amount: int):
        user = await self.db.users.find_one({"_id": principal.user_id}, {"balance": 1, "frozen": 1})
        if user is None or user.get("frozen"):
            raise PermissionDenied("This account is frozen.")
        if user["balance"] <= 0:
            raise PermissionDenied(LOW_BALANCE)
        raise InsufficientCredits(
            f"Insufficient credits: this request needs a hold of {fmt_credits(amount)} credits "
            f"(estimated input plus max_tokens) but the balance is {fmt_credits(user['balance'])} "
            f"credits. Lower max_tokens or top up your account.", code="insufficient_credits")

    async def settle(self, hold: Hold, record: CallRecord) -> Receipt:
        """Release the hold and debit the actual cost in one update, then write the usage
        record and (for a non-zero cost) a ledger entry. Exactly once per hold: a second call
        has no effect and returns an empty receipt.

        `record` is the call's usage record: the tokens to bill (`record.usage`) and its
        descriptive fields (endpoint, stream, status, latency_ms, upstream_request_id, error…).
        """
        if hold.settled:
            return Receipt(0, 0)
        hold.settled = True
        usage = record.usage
        p, cost = hold.principal, hold.model.cost(usage)
        if record.charge_waived:  # a failed call costs nothing; its tokens are still recorded
            cost = 0
        overage = max(0, cost - hold.amount)  # what the hold did not cover (see README Billing)
        # The document as it was just before this update: with the increments known, the
        # credits left are exact without reading the document again.
        before = await self.db.users.find_one_and_update(
            {"_id": p.user_id, "holds": hold.entry},
            {"$inc": {"balance": hold.amount - cost, "held": -hold.amount}, "$pull": {"holds": hold.entry}})
        if before is not None:
            credits_left = before["balance"] + before["held"] - cost
        else:
            # The hold was released by start-up recovery while this request ran (another
            # process restarted): the tokens were still used, so debit them directly.
            before = await self.db.users.find_one_and_update(
                {"_id": p.user_id}, {"$inc": {"balance": -cost}})
            credits_left = before["balance"] + before["held"] - cost if before else 0
        if hold.key_capped:
            await self.keys.refund_cap(p.key_id, hold.amount - cost)
        if overage:
            log.warning("request %s cost %d µcr, above its hold of %d", hold.request_id, cost, hold.amount)
        now = utcnow()
        await self.usage.record({
            "request_id": hold.request_id, "user_id": p.user_id, "key_id": p.key_id,
            "key_name": p.key_name, "model": hold.model.id, **usage.as_dict(),
            "total_tokens": usage.total, "credits": cost, "hold": hold.amount, "overage": overage,
            "created_at": now, **record.fields()})
        if cost:
            await self.db.ledger.insert_one({
                "user_id": p.user_id, "kind": "usage", "amount": -cost, "balance_after": credits_left,
                "request_id": hold.request_id, "note": f"{hold.model.id} · {usage.total} tokens",
                "overage": overage, "created_at": now})
        return Receipt(cost, credits_left)

    async def adjust(self, user_id, amount_credits, *, kind: str = "adjustment", note: str = "",
                     ref: str | None = None) -> int:
        """Add (or, negative, remove) credits and write the ledger entry; returns the new
        credits (micro). The balance moves in one conditional update that also stores the
        ledger entry in the user document (`moves`); the entry is then copied to the ledger
        and taken out of `moves`. If that copy fails (or the process dies first), the entry
        waits in `moves` and `repair_ledger` writes it later, so the movement and its entry
        never come apart.

        Raises InvalidRequest for an amount that is not a number, is zero or is beyond
        MAX_CREDITS, Conflict if a removal would take the available balance below zero or
        an addition the credits above MAX_CREDITS, NotFound for an unknown user.
        """
        amount = parse_amount(amount_credits)
        uid = as_object_id(user_id)
        entry = {"_id": ObjectId(), "user_id": uid, "kind": kind, "amount": amount, "note": note,
                 "ref": ref, "created_at": utcnow()}
        query: dict = {"_id": uid}
        if amount < 0:
            query["balance"] = {"$gte": -amount}
        else:
            query["balance"] = {"$lte": MAX_CREDITS * MICRO - amount}
        user = await self.db.users.find_one_and_update(
            query, {"$inc": {"balance": amount}, "$push": {"moves": entry}}, return_document=AFTER)
        if user is None:
            if not await self.db.users.find_one({"_id": uid}, {"_id": 1}):
                raise NotFound("No such user.")
            if amount < 0:
                raise Conflict("Removing that many credits would make the balance negative.", param="amount")
            raise Conflict(f"Adding that many credits would take the balance above {MAX_CREDITS:,}.",
                           param="amount")
        credits = user["balance"] + user["held"]
        try:
            await self._record_move(uid, {**entry, "balance_after": credits})
        except PyMongoError:
            # The credits moved and the entry is safe in the user document: answer the
            # movement, and let repair_ledger write the entry.
            log.exception("ledger entry %s for user %s left for repair", entry["_id"], uid)
        return credits

    async def _record_move(self, user_id, entry: dict) -> None:
        """Copy one entry of a user's `moves` into the ledger (at most once: the entry keeps
        its id) and take it out of `moves`."""
        try:
            await self.db.ledger.insert_one(dict(entry))
        except DuplicateKeyError:
            if not await self.db.ledger.find_one({"_id": entry["_id"]}, {"_id": 1}):
                raise  # another unique index refused it: not written, leave it for repair
        await self.db.users.update_one({"_id": user_id}, {"$pull": {"moves": {"_id": entry["_id"]}}})

    async def repair_ledger(self, user_id=None) -> int:
        """Write every ledger entry still waiting in a user document (for one user, or for
        all); returns how many were written. A repaired entry's `balance_after` is the
        credits at repair time (marked `repaired`): the exact figure was lost with the write."""
        query: dict = {"moves.0": {"$exists": True}}
        if user_id is not None:
            query["_id"] = as_object_id(user_id)
        repaired = 0
        for user in await self.db.users.find(query, {"moves": 1, "balance": 1, "held": 1}).to_list(None):
            for entry in user["moves"]:
                try:
                    await self._record_move(user["_id"], {"balance_after": user["balance"] + user["held"],
                                                          "repaired": True, **entry})
                except PyMongoError:
                    log.exception("ledger entry %s still cannot be written", entry.get("_id"))
                    continue
                repaired += 1
        if repaired:
            log.warning("wrote %d ledger entries left behind by failed writes", repaired)
        return repaired

    async def credits(self, user_id) -> int:
        """The user's credits (balance + held), in micro-credits."""
        user = await self.db.users.find_one({"_id": as_object_id(user_id)}, {"balance": 1, "held": 1})
        if user is None:
            raise NotFound("No such user.")
        return user["balance"] + user["held"]

    async def ledger(self, user_id, *, limit: int = 50, skip: int = 0) -> list[dict]:
        """The user's credit movements, newest first (ties in time broken by insertion order),
        after writing any of theirs still waiting (see `adjust`)."""
        await self.repair_ledger(user_id)
        cursor = self.db.ledger.find({"user_id": as_object_id(user_id)}, {"_id": 0})
        cursor = cursor.sort([("created_at", -1), ("_id", -1)]).skip(skip).limit(limit)
        return await cursor.to_list(limit)

    async def resettle(self, hold: Hold, record: CallRecord) -> Receipt | None:
        """Retry a settlement that failed on a database error: settles only while the hold's
        entry is still in the user document (so a first attempt that did land is not charged
        again); returns None when there was nothing left to settle."""
        if await self.db.users.find_one({"_id": hold.principal.user_id, "holds": hold.entry}, {"_id": 1}) is None:
            if await self.db.usage.find_one({"request_id": hold.request_id}, {"_id": 1}) is None:
                log.error("settlement of %s: the credits moved but its usage record was lost", hold.request_id)
            return None
        hold.settled = False
        return await self.settle(hold, record)

    async def release_stale_holds(self, *, older_than: dt.datetime, alive: set[str] | None = None) -> int:
        """Release the holds of processes that died before settling them, and write an
        `abandoned` usage record for each: with `alive` (the instance ids whose lease is in
        force), every hold placed by an instance not in it; holds that name no instance (and,
        without `alive`, every hold) when placed before `older_than`. Returns how many."""
        released = 0
        users = await self.db.users.find({"holds.0": {"$exists": True}}, {"holds": 1}).to_list(None)
        for user in users:
            for entry in user.get("holds", []):
                request_id, amount, at, capped_key = parse_hold_entry(entry)
                instance = hold_instance(entry)
                if instance is not None and alive is not None:
                    if instance in alive:
                        continue
                elif at >= older_than:
                    continue
                done = await self.db.users.find_one_and_update(
                    {"_id": user["_id"], "holds": entry},
                    {"$inc": {"balance": amount, "held": -amount}, "$pull": {"holds": entry}})
                if done is None:
                    continue
                released += 1
                if capped_key is not None:
                    await self.keys.refund_cap(capped_key, amount)
                await self.usage.record_abandoned(request_id, user["_id"], hold=amount)
        if released:
            log.warning("released %d stale credit holds", released)
        return released
