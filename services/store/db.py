"""The one module that knows which MongoDB driver is in use.

`memory://` runs on mongomock-motor in-process (nothing persisted); `mongodb://…` uses
PyMongo's own `AsyncMongoClient` (Motor's successor: Motor's support ends in May 2027, and
on the real server it took 11% less client CPU per settlement — README, "The driver").
The rest of the code only calls the API subset both (and Motor) share: find_one,
find(...).sort().skip().limit().to_list(), insert_one, insert_many, find_one_and_delete,
find_one_and_update
(without a projection), update_one, update_many, count_documents, create_index,
delete_many, command("ping").
"""
from __future__ import annotations

import logging

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from services.config import Settings

log = logging.getLogger(__name__)

__all__ = ["connect", "ensure_indexes", "ReturnDocument", "DuplicateKeyError", "PyMongoError",
           "ASCENDING", "DESCENDING", "AFTER"]

AFTER = ReturnDocument.AFTER
NOT_IMPLEMENTED = 238  # the server error code for an option it does not support


def connect(settings: Settings):
    """Return (client, database) for the configured store. Call inside the running loop."""
    if settings.embedded:
        from mongomock_motor import AsyncMongoMockClient

        log.warning("MONGODB_URI is memory:// — using the embedded in-process store; "
                    "NO DATA IS PERSISTED. Set MONGODB_URI=mongodb://… for production.")
        client = AsyncMongoMockClient()
    else:
        from pymongo import AsyncMongoClient

        # Bounded waits: with the database gone a request fails (503) within about
        # DATABASE_TIMEOUT_SECONDS (server selection) instead of hanging. Opening a connection
        # to a server that answers may take longer under a burst (many new connections at
        # once), and a single operation longer still, before either counts as failed.
        timeout_ms = int(settings.database_timeout_seconds * 1000)
        client = AsyncMongoClient(settings.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=timeout_ms,
                                  connectTimeoutMS=max(5_000, timeout_ms), socketTimeoutMS=max(60_000, 5 * timeout_ms))
    return client, Database(client[settings.mongodb_db])


class Database:
    """The database handle every service holds: `db.users` and the like, each collection
    looked up once. Both drivers build a new collection object on every attribute access
    (6% of the gateway's CPU per request on the embedded store, Motor is no cheaper)."""

    def __init__(self, db) -> None:
        self._db = db

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._db, name)
        self.__dict__[name] = value
        return value

    def __getitem__(self, name: str):
        return getattr(self, name)


async def ensure_indexes(db) -> None:
    """Create every index the services rely on (idempotent)."""
    await db.users.create_index("username_lower", unique=True)
    await db.api_keys.create_index("key_hash", unique=True)
    await db.api_keys.create_index([("user_id", ASCENDING), ("created_at", DESCENDING)])
    await db.usage.create_index([("user_id", ASCENDING), ("created_at", DESCENDING)])
    await db.usage.create_index([("key_id", ASCENDING), ("created_at", DESCENDING)])
    await db.usage_daily.create_index([("user_id", ASCENDING), ("day", ASCENDING)])
    await db.ledger.create_index([("user_id", ASCENDING), ("created_at", DESCENDING)])
    await db.topup_codes.create_index("code_hash", unique=True)
    await db.login_attempts.create_index("key", unique=True)
    # Throttle windows last minutes; a day later MongoDB deletes the document itself.
    await _ttl_index(db.login_attempts, "window_start", 86400)
    await _ttl_index(db.rate_limits, "expires_at", 0)
    await db.sessions.create_index("user_id")
    await db.admin_tokens.create_index("token_hash", unique=True)
    await db.audit.create_index([("at", DESCENDING)])
    await db.password_resets.create_index("user_id")
    await _ttl_index(db.sessions, "expires_at", 0)


async def _ttl_index(collection, field: str, seconds: int) -> None:
    """A TTL index: the server deletes each document `seconds` after its `field`. Readers
    never rely on the deletion (they compare times themselves; MongoDB deletes about once a
    minute), so a server without TTL indexes (FerretDB 1.x) only keeps old documents longer."""
    try:
        await collection.create_index(field, expireAfterSeconds=seconds)
    except OperationFailure as exc:
        if exc.code != NOT_IMPLEMENTED:
            raise
        log.warning("this server has no TTL indexes: expired %s documents stay until deleted", collection.name)
        await collection.create_index(field)


async def ensure_usage_retention(db, days: int) -> None:
    """Raw usage records expire `days` after `created_at` (0: kept for good); the daily
    rollups are never expired. A changed retention replaces the index."""
    if days <= 0:
        return
    seconds = int(days) * 86400
    try:
        await _ttl_index(db.usage, "created_at", seconds)
    except OperationFailure as exc:
        # IndexOptionsConflict / IndexKeySpecsConflict (mongomock: no code): another retention
        if exc.code not in (85, 86) and "different options" not in str(exc):
            raise
        await db.usage.drop_index("created_at_1")
        await _ttl_index(db.usage, "created_at", seconds)


_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def literal_pattern(text: str) -> str:
    """A `$regex` pattern matching `text` literally, valid for MongoDB's PCRE and for RE2
    (FerretDB's engine), which refuses a backslash before anything but ASCII punctuation:
    so only that punctuation is escaped (`re.escape` also escapes spaces and more)."""
    return "".join("\\" + c if c in _PUNCTUATION else c for c in text)
