"""Users: accounts, password hashing (argon2, off the event loop), freezing, and the
website's sessions.

Owns the `users` collection's identity fields and the `sessions` collection
    {_id: sha256(token), user_id, created_at, expires_at}
(a session is valid until `expires_at` while its document exists; a TTL index clears expired ones).
Balances in the user documents are moved only by `services/billing/credits.py`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from passlib.hash import argon2

from services.core.clock import utcnow
from services.core.errors import Conflict, InvalidRequest, NotFound
from services.core.ids import as_object_id
from services.store.db import AFTER, DuplicateKeyError, literal_pattern

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 128
PASSWORD_RULES = f"{PASSWORD_MIN}–{PASSWORD_MAX} characters, with at least one letter and one digit"

# Computed once so that verifying an unknown username costs as much as a real one
# (no user-enumeration through timing).
_DUMMY_HASH = argon2.hash("dummy-password-1")


def check_password_rules(password: object) -> str:
    """Return the password if it meets the rules, else raise InvalidRequest saying them."""
    if (not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX
            or not re.search(r"[A-Za-z]", password) or not re.search(r"\d", password)):
        raise InvalidRequest(f"Password must be {PASSWORD_RULES}.", param="password")
    return password


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, argon2.hash, password)


async def verify_password(password: str, hashed: str | None) -> bool:
    loop = asyncio.get_running_loop()
    try:
        ok = await loop.run_in_executor(None, argon2.verify, password, hashed or _DUMMY_HASH)
    except (ValueError, TypeError):
        return False
    return bool(ok and hashed)


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class UserService:
    """Create, find, authenticate and freeze users."""

    db: object

    async def create(self, username: object, password: object, *, email: object = None,
                     role: str = "user") -> dict:
        """Create a user with a zero balance and return its document.

        Raises InvalidRequest for a bad username/email/password, Conflict if the name is taken.
        """
        if not isinstance(username, str) or not USERNAME_RE.match(username):
            raise InvalidRequest("Username must be 3–32 characters: letters, digits, '_', '.', '-'.",
                                 param="username")
        if email not in (None, "") and (not isinstance(email, str) or not EMAIL_RE.match(email)):
            raise InvalidRequest("Email address is not valid.", param="email")
        check_password_rules(password)
        if await self.db.users.find_one({"username_lower": username.lower()}, {"_id": 1}):
            raise Conflict(f"Username {username!r} is already taken.", param="username")
        doc = {"username": username, "username_lower": username.lower(), "email": email or None,
               "password_hash": await hash_password(password), "role": role, "frozen": False,
               "balance": 0, "held": 0, "holds": [], "created_at": utcnow()}
        try:
            result = await self.db.users.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"Username {username!r} is already taken.", param="username") from None
        doc["_id"] = result.inserted_id
        return doc

    async def get(self, user_id) -> dict:
        """Return the user document by id; raises NotFound."""
        doc = await self.db.users.find_one({"_id": as_object_id(user_id)})
        if doc is None:
            raise NotFound("No such user.")
        return doc

    async def by_username(self, username: str) -> dict:
        """Return the user document by (case-insensitive) username; raises NotFound."""
        doc = await self.db.users.find_one({"username_lower": str(username).lower()})
        if doc is None:
            raise NotFound(f"No such user: {username!r}")
        return doc

    async def authenticate(self, username: str, password: str) -> dict | None:
        """Return the user if the password matches, else None (constant-cost on unknown names)."""
        doc = await self.db.users.find_one({"username_lower": str(username).lower()})
        ok = await verify_password(password, doc.get("password_hash") if doc else None)
        return doc if ok and doc else None

    async def set_frozen(self, user_id, frozen: bool) -> dict:
        doc = await self.db.users.find_one_and_update(
            {"_id": as_object_id(user_id)}, {"$set": {"frozen": bool(frozen)}}, return_document=AFTER)
        if doc is None:
            raise NotFound("No such user.")
        return doc

    async def change_password(self, user_id, current: str, new: str, *, keep_session: str | None = None) -> None:
        """Replace the password after checking the current one, and end every session of the
        user except `keep_session`. Raises InvalidRequest (param `current_password` when the
        current one is wrong, `password` when the new one breaks the rules)."""
        doc = await self.get(user_id)
        if not await verify_password(current or "", doc.get("password_hash")):
            raise InvalidRequest("Current password is wrong.", param="current_password")
        check_password_rules(new)
        await self.db.users.update_one({"_id": doc["_id"]},
                                       {"$set": {"password_hash": await hash_password(new)}})
        await self.end_sessions(doc["_id"], keep=keep_session)

    async def start_session(self, user_id, *, days: float) -> str:
        """Open a session lasting `days` and return its token (only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        await self.db.sessions.insert_one({"_id": _session_id(token), "user_id": as_object_id(user_id),
                                           "created_at": now, "expires_at": now + dt.timedelta(days=days)})
        return token

    async def session_user(self, token: str) -> dict | None:
        """The user whose live session `token` is, else None."""
        session = await self.db.sessions.find_one({"_id": _session_id(token), "expires_at": {"$gt": utcnow()}})
        if session is None:
            return None
        return await self.db.users.find_one({"_id": session["user_id"]})

    async def end_session(self, token: str) -> None:
        """End one session; the token opens nothing afterwards."""
        await self.db.sessions.delete_many({"_id": _session_id(token)})

    async def end_sessions(self, user_id, *, keep: str | None = None) -> None:
        """End every session of the user (all but `keep`, when given)."""
        query: dict = {"user_id": as_object_id(user_id)}
        if keep:
            query["_id"] = {"$ne": _session_id(keep)}
        await self.db.sessions.delete_many(query)

    async def set_email(self, user_id, email: str) -> None:
        if email and not EMAIL_RE.match(email):
            raise InvalidRequest("Email address is not valid.", param="email")
        await self.db.users.update_one({"_id": as_object_id(user_id)}, {"$set": {"email": email or None}})

    async def ensure_admin(self, username: str, password: str) -> None:
        """Create the configured admin account if it does not exist yet."""
        if not await self.db.users.find_one({"username_lower": username.lower()}, {"_id": 1}):
            try:
                await self.create(username, password, role="admin")
            except Conflict:  # another process starting at the same time created it
                pass

    async def set_role(self, user_id, role: object) -> tuple[dict, str]:
        """Make the user an admin or a plain user: (the document after, the role before).

        Raises InvalidRequest for another role, Conflict when it would leave no admin."""
        if role not in ("admin", "user"):
            raise InvalidRequest("role: must be 'admin' or 'user'", param="role")
        doc = await self.get(user_id)
        before = doc.get("role", "user")
        if before == "admin" and role != "admin":
            others = await self.db.users.count_documents({"role": "admin", "_id": {"$ne": doc["_id"]}})
            if not others:
                raise Conflict("The last admin cannot be demoted: promote another admin first.", param="role")
        doc = await self.db.users.find_one_and_update({"_id": doc["_id"]}, {"$set": {"role": role}},
                                                      return_document=AFTER)
        if before == "admin" and role != "admin" and not await self.db.users.count_documents({"role": "admin"}):
            # Two admins demoted each other at once: put this one back rather than leave none.
            doc = await self.db.users.find_one_and_update({"_id": doc["_id"]}, {"$set": {"role": "admin"}},
                                                          return_document=AFTER)
            raise Conflict("The last admin cannot be demoted: promote another admin first.", param="role")
        return doc, before

    async def search(self, q: str = "", *, sort: str = "created", limit: int = 50,
                     skip: int = 0) -> tuple[list[dict], int]:
        """Users whose name or email contains `q` (case-insensitive), and how many match.

        `sort`: "created" (newest first), "balance" (largest first) or "name"."""
        query: dict = {}
        if q:
            pattern = literal_pattern(q.strip().lower())
            query = {"$or": [{"username_lower": {"$regex": pattern}},
                             {"email": {"$regex": pattern, "$options": "i"}}]}
        order = {"balance": [("balance", -1), ("_id", 1)], "name": [("username_lower", 1)]}.get(
            sort, [("created_at", -1), ("_id", -1)])
        total = await self.db.users.count_documents(query)
        docs = await self.db.users.find(query, {"password_hash": 0, "holds": 0}).sort(order).skip(skip).limit(
            limit).to_list(None)
        return docs, total

    async def set_password(self, user_id, new: object) -> None:
        """An admin sets a new password: rules checked, every session of the user ended."""
        check_password_rules(new)
        doc = await self.get(user_id)
        await self.db.users.update_one({"_id": doc["_id"]}, {"$set": {"password_hash": await hash_password(new)}})
        await self.end_sessions(doc["_id"])


    async def set_rpm(self, user_id, rpm: int) -> dict:
        """The requests-per-minute limit of each of the user's keys that sets none (0 = the
        gateway default)."""
        doc = await self.db.users.find_one_and_update({"_id": as_object_id(user_id)}, {"$set": {"rpm": int(rpm)}},
                                                      return_document=AFTER)
        if doc is None:
            raise NotFound("No such user.")
        return doc

    # One-time password-reset links (`password_resets`, written only here):
    #     {_id: sha256(token), user_id, expires_at}
    RESET_HOURS = 24

    async def create_reset(self, user_id) -> str:
        """A one-time reset token for the user, valid RESET_HOURS (only its hash is stored;
        a newer one replaces any older)."""
        doc = await self.get(user_id)
        token = secrets.token_urlsafe(32)
        await self.db.password_resets.delete_many({"user_id": doc["_id"]})
        await self.db.password_resets.insert_one({"_id": _session_id(token), "user_id": doc["_id"],
                                                  "expires_at": utcnow() + dt.timedelta(hours=self.RESET_HOURS)})
        return token

    async def reset_user(self, token: str) -> dict | None:
        """The user a live reset token belongs to, else None."""
        reset = await self.db.password_resets.find_one({"_id": _session_id(token), "expires_at": {"$gt": utcnow()}})
        return await self.db.users.find_one({"_id": reset["user_id"]}) if reset else None

    async def use_reset(self, token: str, new: object) -> dict | None:
        """Set the password through a reset token, once: the token is claimed (deleted)
        before the password changes, so two uses cannot both succeed. None for a dead token."""
        check_password_rules(new)
        reset = await self.db.password_resets.find_one_and_delete(
            {"_id": _session_id(token), "expires_at": {"$gt": utcnow()}})
        if reset is None:
            return None
        await self.set_password(reset["user_id"], new)
        return await self.get(reset["user_id"])
