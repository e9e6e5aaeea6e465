"""API keys: creation, authentication (SHA-256 lookup with a short in-process cache), limits.

Keys are `sk-` + 64 characters; only their SHA-256 hash and a display prefix are stored.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import string
import time
from dataclasses import dataclass, field

from services.core.clock import as_utc, utcnow
from services.core.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound, PermissionDenied
from services.core.ids import as_object_id
from services.core.money import to_micro_checked
from services.core.types import Principal
from services.store.db import AFTER, literal_pattern

KEY_ALPHABET = string.ascii_letters + string.digits
KEY_NAME_MAX = 64
MISSING_KEY = "Missing API key. Provide via x-api-key header or Authorization: Bearer."
INVALID_KEY = "Invalid API key."
LAST_USED_EVERY = 60.0  # seconds between last_used_at writes per key (per process)
# Documented maxima of a key's limits (README, management API).
MAX_CREDIT_CAP = 1_000_000_000  # credits
MAX_RPM = 1_000_000
MAX_ALLOWED_MODELS, MODEL_ID_MAX = 100, 128


def new_key() -> str:
    return "sk-" + "".join(secrets.choice(KEY_ALPHABET) for _ in range(64))


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def display_prefix(raw: str) -> str:
    return f"{raw[:7]}…{raw[-4:]}"


@dataclass
class KeyService:
    """Create, list, authenticate, rename, freeze and revoke API keys."""

    db: object
    usage: object  # UsageService, to count a key's spend when a credit cap is first set
    cache_seconds: float = 1.0
    _cache: dict[str, tuple[float, Principal | None, str | None]] = field(default_factory=dict)
    _last_used: dict[object, float] = field(default_factory=dict)

    async def create(self, user_id, name: object, *, credit_cap=None, expires_at=None,
                     allowed_models=None, rpm=None) -> tuple[str, dict]:
        """Create a key for the user. Returns (full key — shown this once, key document)."""
        name = self._check_name(name)
        raw = new_key()
        doc = {"user_id": as_object_id(user_id), "name": name, "key_hash": hash_key(raw),
               "prefix": display_prefix(raw), "created_at": utcnow(), "last_used_at": None,
               "frozen": False, "revoked": False}
        doc.update(self._limits(credit_cap, expires_at, allowed_models, rpm))
        doc["cap_left"] = doc["credit_cap"]
        result = await self.db.api_keys.insert_one(doc)
        doc["_id"] = result.inserted_id
        return raw, doc

    async def authenticate(self, raw: str | None) -> Principal:
        """Resolve a raw key to its Principal.

        Raises AuthenticationFailed (missing/unknown/revoked key) or PermissionDenied (frozen or
        expired key, frozen user). Cached for `cache_seconds`; this process's own edits
        invalidate the cache at once.
        """
        if not raw:
            raise AuthenticationFailed(MISSING_KEY)
        digest = hash_key(raw)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is None or hit[0] < now:
            principal, problem = await self._lookup(digest)
            hit = (now + self.cache_seconds, principal, problem)
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[digest] = hit
        _, principal, problem = hit
        if principal is None:
            raise AuthenticationFailed(INVALID_KEY)
        if problem:
            raise PermissionDenied(problem)
        if principal.expires_at and principal.expires_at <= utcnow():
            raise PermissionDenied("This API key has expired.")
        if now - self._last_used.get(principal.key_id, 0.0) > LAST_USED_EVERY:
            self._last_used[principal.key_id] = now
            await self.db.api_keys.update_one({"_id": principal.key_id},
                                              {"$set": {"last_used_at": utcnow()}})
        return principal

    async def _lookup(self, digest: str) -> tuple[Principal | None, str | None]:
        key = await self.db.api_keys.find_one({"key_hash": digest, "revoked": {"$ne": True}})
        if key is None:
            return None, None
        user = await self.db.users.find_one({"_id": key["user_id"]}, {"username": 1, "frozen": 1, "rpm": 1})
        if user is None:
            return None, None
        expires = as_utc(key["expires_at"]) if key.get("expires_at") else None
        principal = Principal(user_id=key["user_id"], username=user["username"], key_id=key["_id"],
                              key_name=key["name"], credit_cap=key.get("credit_cap"),
                              allowed_models=tuple(key.get("allowed_models") or ()), expires_at=expires,
                              rpm=int(key.get("rpm") or user.get("rpm") or 0))  # the user's rpm: keys without their own
        problem = None
        if key.get("frozen"):
            problem = "This API key is frozen."
        elif user.get("frozen"):
            problem = "This account is frozen."
        return principal, problem

    async def reserve_cap(self, key_id, amount: int) -> bool:
        """Take `amount` from a capped key's `cap_left` if it covers it. Atomic; False if not."""
        doc = await self.db.api_keys.find_one_and_update(
            {"_id": key_id, "cap_left": {"$gte": amount}}, {"$inc": {"cap_left": -amount}})
        return doc is not None

    async def refund_cap(self, key_id, amount: int) -> None:
        """Give back `amount` of a key's credit cap (unless the cap was lifted meanwhile). Atomic."""
        await self.db.api_keys.update_one({"_id": as_object_id(key_id), "cap_left": {"$ne": None}},
                                          {"$inc": {"cap_left": amount}})

    @staticmethod
    def check_model(principal: Principal, model) -> None:
        """Raise PermissionDenied if the key is limited to other models."""
        if principal.allowed_models and model.id not in principal.allowed_models:
            raise PermissionDenied(f"This API key may only use: {', '.join(principal.allowed_models)}.")

    def invalidate(self) -> None:
        """Forget cached lookups (after a freeze, revoke or user change in this process)."""
        self._cache.clear()

    async def list_for_user(self, user_id) -> list[dict]:
        return await self.db.api_keys.find(
            {"user_id": as_object_id(user_id), "revoked": {"$ne": True}}).sort("created_at", -1).to_list(None)

    async def page_for_user(self, user_id, *, limit: int, skip: int = 0) -> tuple[list[dict], int]:
        """One page of the user's live keys, newest first, and how many there are in all."""
        query = {"user_id": as_object_id(user_id), "revoked": {"$ne": True}}
        cursor = self.db.api_keys.find(query).sort([("created_at", -1), ("_id", -1)]).skip(skip).limit(limit)
        return await cursor.to_list(limit), await self.db.api_keys.count_documents(query)

    async def get(self, key_id, *, user_id=None) -> dict:
        """Return a key document; with user_id, only if that user owns it. Raises NotFound."""
        query = {"_id": as_object_id(key_id), "revoked": {"$ne": True}}
        if user_id is not None:
            query["user_id"] = as_object_id(user_id)
        doc = await self.db.api_keys.find_one(query)
        if doc is None:
            raise NotFound("No such API key.")
        return doc

    async def update(self, key_id, *, user_id=None, name=None, frozen=None, revoked=None,
                     limits: dict | None = None) -> dict:
        """Rename, freeze/unfreeze, revoke or set limits on a key (owner-checked with user_id)."""
        changes: dict = {}
        if name is not None:
            changes["name"] = self._check_name(name)
        if frozen is not None:
            changes["frozen"] = bool(frozen)
        if revoked:
            changes["revoked"] = True
        query = {"_id": as_object_id(key_id), "revoked": {"$ne": True}}
        if user_id is not None:
            query["user_id"] = as_object_id(user_id)
        update: dict = {"$set": changes}
        if limits is not None:
            changes.update(self._limits(**limits))
            old_cap = (await self.get(key_id, user_id=user_id)).get("credit_cap")
            update.update(await self._cap_change(key_id, old_cap, changes))
            query["credit_cap"] = old_cap  # the change was worked out from this cap
        doc = await self.db.api_keys.find_one_and_update(query, update, return_document=AFTER)
        if doc is None:
            if limits is not None and await self.db.api_keys.find_one({"_id": as_object_id(key_id)}, {"_id": 1}):
                raise Conflict("The key's limits changed meanwhile; reload and try again.", param="credit_cap")
            raise NotFound("No such API key.")
        self.invalidate()
        return doc

    async def _cap_change(self, key_id, old_cap: int | None, changes: dict) -> dict:
        """The update to `cap_left` for a new credit cap. Requests in flight hold part of
        `cap_left` and give back what they did not spend when they settle, so an existing cap
        moves by the difference ($inc) rather than being recomputed; a new cap starts from
        what the key has spent so far."""
        new_cap = changes["credit_cap"]
        if new_cap is None:
            changes["cap_left"] = None
            return {}
        if old_cap is None:
            changes["cap_left"] = new_cap - await self.usage.spent_by_key(as_object_id(key_id))
            return {}
        return {"$inc": {"cap_left": new_cap - old_cap}} if new_cap != old_cap else {}

    @staticmethod
    def _check_name(name: object) -> str:
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest("Key name is required.", param="name")
        if len(name.strip()) > KEY_NAME_MAX:
            raise InvalidRequest(f"Key name must be at most {KEY_NAME_MAX} characters.", param="name")
        return name.strip()

    @staticmethod
    def _limits(credit_cap=None, expires_at=None, allowed_models=None, rpm=None) -> dict:
        """Validate optional per-key limits (as JSON or a form sends them) into document
        fields; None or "" clears a limit. Raises InvalidRequest naming the field for a
        wrong type or a value outside the documented range."""
        out: dict = {"credit_cap": None, "expires_at": None, "allowed_models": [], "rpm": 0}
        if rpm not in (None, ""):
            out["rpm"] = _whole_number(rpm, MAX_RPM, "Requests per minute", "rpm")
        if credit_cap not in (None, ""):
            try:
                out["credit_cap"] = to_micro_checked(credit_cap, limit=MAX_CREDIT_CAP)
            except ValueError:
                raise InvalidRequest(f"Credit cap must be a number of credits up to {MAX_CREDIT_CAP:,}.",
                                     param="credit_cap") from None
            if out["credit_cap"] <= 0:
                raise InvalidRequest("Credit cap must be positive.", param="credit_cap")
        if expires_at not in (None, ""):
            out["expires_at"] = _expiry(expires_at)
        if allowed_models not in (None, "", []):
            out["allowed_models"] = _model_ids(allowed_models)
        return out

    async def list_all(self, q: str = "", *, status: str = "", limit: int = 50, skip: int = 0) -> tuple[list[dict], int]:
        """Every user's keys (revoked ones too, with `status=revoked`), newest first,
        optionally by name or prefix containing `q`: (page, how many match)."""
        query: dict = {}
        if q:
            pattern = literal_pattern(q.strip())
            query["$or"] = [{"name": {"$regex": pattern, "$options": "i"}}, {"prefix": {"$regex": pattern}}]
        if status == "revoked":
            query["revoked"] = True
        elif status == "frozen":
            query.update(frozen=True, revoked={"$ne": True})
        elif status == "active":
            query.update(frozen={"$ne": True}, revoked={"$ne": True})
        total = await self.db.api_keys.count_documents(query)
        docs = await self.db.api_keys.find(query, {"key_hash": 0}).sort([("created_at", -1), ("_id", -1)]).skip(
            skip).limit(limit).to_list(None)
        return docs, total


def _whole_number(value: object, maximum: int, label: str, param: str) -> int:
    """An integer 0…maximum from JSON (int, integral float) or a form (digits)."""
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,18}\s*", value):
        value = int(value)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidRequest(f"{label} must be a whole number from 0 to {maximum:,}.", param=param)
    return value


def _expiry(value: object) -> dt.datetime:
    """An expiry time from an ISO 8601 date or time (text) or a datetime/date."""
    problem = "Expiry must be a date (YYYY-MM-DD) or an ISO 8601 time, in the years 2000–9999."
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip()[:64])
        except ValueError:
            raise InvalidRequest(problem, param="expires_at") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if not isinstance(value, dt.datetime):
        raise InvalidRequest(problem, param="expires_at")
    try:
        value = as_utc(value)
    except OverflowError:  # an offset that moves it outside the datetime range
        raise InvalidRequest(problem, param="expires_at") from None
    if not 2000 <= value.year <= 9999:
        raise InvalidRequest(problem, param="expires_at")
    return value


def _model_ids(value: object) -> list[str]:
    """Model ids from a list of strings or comma-separated text."""
    if isinstance(value, str):
        value = [m.strip() for m in value.split(",") if m.strip()]
    if (not isinstance(value, (list, tuple)) or len(value) > MAX_ALLOWED_MODELS
            or not all(isinstance(m, str) and 0 < len(m) <= MODEL_ID_MAX for m in value)):
        raise InvalidRequest(f"allowed_models must be a list of at most {MAX_ALLOWED_MODELS} model ids.",
                             param="allowed_models")
    return list(value)
