"""Top-up codes (`topup_codes` collection): made in batches, redeemed once for credits.

Like API keys, only a code's SHA-256 hash and a display prefix are stored; the full codes
are returned once, to whoever generated them.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal

from services.core.clock import utcnow
from services.core.errors import Conflict, InvalidRequest, NotFound
from services.core.ids import as_object_id
from services.core.money import MICRO, to_micro_checked
from services.store.db import AFTER, literal_pattern

# 32 symbols without 0/O and 1/I, so a code read aloud or retyped survives; 16 of them are
# 80 random bits, far beyond guessing.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_PREFIX, CODE_GROUPS, GROUP_LEN = "CLM", 4, 4
CODE_RE = re.compile(rf"^{CODE_PREFIX}[{CODE_ALPHABET}]{{{CODE_GROUPS * GROUP_LEN}}}$")
MAX_BATCH = 1000
MAX_CODE_CREDITS = 1_000_000
NOTE_MAX = 200
UNUSABLE_CODE = "This code is unknown or has already been redeemed. Check it and try again."


def new_code() -> str:
    """A fresh code: `CLM-XXXX-XXXX-XXXX-XXXX`."""
    groups = ["".join(secrets.choice(CODE_ALPHABET) for _ in range(GROUP_LEN)) for _ in range(CODE_GROUPS)]
    return "-".join([CODE_PREFIX, *groups])


def canonical_code(raw: object) -> str | None:
    """The code as hashed (upper case, no dashes or spaces, with its prefix), or None if it
    cannot be a code. The prefix may be left out when typing."""
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    text = re.sub(r"[\s-]+", "", raw).upper()
    if len(text) == CODE_GROUPS * GROUP_LEN:
        text = CODE_PREFIX + text
    return text if CODE_RE.match(text) else None


def hash_code(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class TopupService:
    """Generate and redeem top-up codes; redemption credits through BillingService."""

    db: object
    billing: object  # BillingService

    async def generate(self, credits: object, *, count: object = 1, note: object = "",
                       created_by: str | None = None, expires_at: object = None) -> list[str]:
        """Create `count` codes worth `credits` each and return them (shown this once).

        Raises InvalidRequest for a non-positive or too large amount, a bad count or note.
        """
        try:
            amount = to_micro_checked(credits, limit=MAX_CODE_CREDITS)
        except ValueError:
            raise InvalidRequest(f"credits: must be a number above 0 and at most {MAX_CODE_CREDITS}.",
                                 param="credits") from None
        if not 0 < amount <= MAX_CODE_CREDITS * MICRO:
            raise InvalidRequest(f"credits: must be above 0 and at most {MAX_CODE_CREDITS}.", param="credits")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH:
            raise InvalidRequest(f"count: must be an integer from 1 to {MAX_BATCH}.", param="count")
        if note is None:
            note = ""
        if not isinstance(note, str) or len(note) > NOTE_MAX:
            raise InvalidRequest(f"note: must be text of at most {NOTE_MAX} characters.", param="note")
        if expires_at is not None:
            expires_at = _expiry(expires_at)
        codes = [new_code() for _ in range(count)]
        now = utcnow()
        await self.db.topup_codes.insert_many([
            {"code_hash": hash_code(canonical_code(code)), "prefix": code[:8], "amount": amount,
             "note": note.strip(), "created_by": created_by, "created_at": now,
             "redeemed_by": None, "redeemed_at": None, "expires_at": expires_at, "voided_at": None}
            for code in codes])
        return codes

    async def redeem(self, user_id, raw_code: object) -> tuple[int, int]:
        """Add the code's credits to the user, exactly once per code.

        Returns (micro-credits added, the user's credits afterwards). Atomic: the code is
        claimed with one conditional update before the balance moves, so two concurrent
        redemptions of the same code credit it once. Raises InvalidRequest for a malformed
        code, and UNUSABLE_CODE alike for an unknown or already used one.
        """
        canonical = canonical_code(raw_code)
        if canonical is None:
            raise InvalidRequest("That is not a top-up code. Codes look like CLM-XXXX-XXXX-XXXX-XXXX.",
                                 param="code")
        digest, uid = hash_code(canonical), as_object_id(user_id)
        now = utcnow()
        code = await self.db.topup_codes.find_one_and_update(
            {"code_hash": digest, "redeemed_at": None, "voided_at": None,
             "$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]},
            {"$set": {"redeemed_by": uid, "redeemed_at": utcnow()}}, return_document=AFTER)
        if code is None:
            # One answer for unknown and used codes: telling them apart would confirm which
            # guessed or leaked codes exist.
            raise InvalidRequest(UNUSABLE_CODE, param="code")
        amount = code["amount"]
        try:
            credits = await self.billing.adjust(uid, Decimal(amount) / MICRO, kind="topup",
                                                note=f"Top-up code {code['prefix']}…", ref=str(code["_id"]))
        except Exception:
            # The balance did not move: give the code back so it can be redeemed again.
            await self.db.topup_codes.update_one({"_id": code["_id"], "redeemed_by": uid},
                                                 {"$set": {"redeemed_by": None, "redeemed_at": None}})
            raise
        return amount, credits

    async def list(self, q: str = "", *, status: str = "", limit: int = 50, skip: int = 0) -> tuple[list[dict], int]:
        """Codes newest first, by note or prefix containing `q`, and status "unused",
        "redeemed", "void" or "expired": (page, how many match)."""
        query: dict = {}
        if q:
            pattern = literal_pattern(q.strip())
            query["$or"] = [{"note": {"$regex": pattern, "$options": "i"}},
                            {"prefix": {"$regex": pattern, "$options": "i"}}]
        now = utcnow()
        if status == "redeemed":
            query["redeemed_at"] = {"$ne": None}
        elif status == "void":
            query["voided_at"] = {"$ne": None}
        elif status == "unused":
            query.update(redeemed_at=None, voided_at=None)
            query.setdefault("$and", []).append({"$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]})
        elif status == "expired":
            query.update(redeemed_at=None, voided_at=None, expires_at={"$ne": None, "$lte": now})
        total = await self.db.topup_codes.count_documents(query)
        docs = await self.db.topup_codes.find(query, {"code_hash": 0}).sort([("created_at", -1), ("_id", -1)]).skip(
            skip).limit(limit).to_list(None)
        return docs, total

    async def void(self, code_id) -> dict:
        """Void an unredeemed code, atomically (a redemption racing it wins or loses whole).
        Raises NotFound for an unknown code, Conflict for a redeemed or already void one."""
        doc = await self.db.topup_codes.find_one_and_update(
            {"_id": as_object_id(code_id), "redeemed_at": None, "voided_at": None},
            {"$set": {"voided_at": utcnow()}}, return_document=AFTER)
        if doc is None:
            if await self.db.topup_codes.find_one({"_id": as_object_id(code_id)}, {"_id": 1}) is None:
                raise NotFound("No such top-up code.")
            raise Conflict("This code was already redeemed or voided.", param="code_id")
        return doc


def _expiry(value: object) -> dt.datetime:
    """An expiry from an ISO 8601 date or time (UTC when no offset), in the future."""
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest("expires_at: an ISO 8601 date or time, e.g. 2027-01-31", param="expires_at") from None
    else:
        raise InvalidRequest("expires_at: an ISO 8601 date or time, e.g. 2027-01-31", param="expires_at")
    when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    if when <= utcnow():
        raise InvalidRequest("expires_at: must be in the future", param="expires_at")
    return when

