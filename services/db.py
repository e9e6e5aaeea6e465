"""The one module that knows which MongoDB driver is in use.

`memory://` runs on mongomock-motor in-process (nothing persisted); `mongodb://…` uses
Motor. Motor is in critical-fix-only support until May 2027: swapping to PyMongo's
`AsyncMongoClient` means changing `connect()` here and nothing else, because the rest of
the code only calls the API subset both drivers (and mongomock-motor) share:
find_one, find(...).sort().skip().limit().to_list(), insert_one, insert_many,
find_one_and_update, update_one, update_many, count_documents, aggregate(...).to_list(),
create_index, delete_many.
"""
from __future__ import annotations

import itertools
import logging

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.config import Settings

log = logging.getLogger(__name__)

__all__ = ["connect", "ensure_indexes", "ReturnDocument", "DuplicateKeyError", "PyMongoError",
           "ASCENDING", "DESCENDING", "AFTER"]

AFTER = ReturnDocument.AFTER


def _index_embedded_id_lookups() -> None:
    """Make mongomock answer `{"_id": value, …}` filters from its id-keyed store.

    mongomock evaluates every filter against every document, so the balance updates on the
    hot path (always by `_id`) would slow down linearly with the number of users. Only the
    embedded store is touched; results are identical (the rest of the filter still applies).
    """
    from mongomock.collection import Collection
    from mongomock.filtering import filter_applies

    if getattr(Collection, "_cheaplm_id_lookup", False):
        return
    scan = Collection._iter_documents

    def iter_documents(self, filter):
        doc_id = filter.get("_id") if isinstance(filter, dict) else None
        if doc_id is None or isinstance(doc_id, dict):
            return scan(self, filter)
        try:
            doc = self._store[doc_id] if doc_id in self._store else None
        except TypeError:  # an unhashable _id value: fall back to the scan
            return scan(self, filter)
        return iter([doc] if doc is not None and filter_applies(filter, doc) else [])

    Collection._iter_documents = iter_documents
    Collection._cheaplm_id_lookup = True
    _copy_only_the_page()


def _copy_only_the_page() -> None:
    """Make a mongomock cursor with a limit copy only the documents it returns.

    mongomock filters and sorts the stored documents, then copies (and projects) every
    match before slicing skip/limit: a page of 25 rows out of 20,000 records copied all
    20,000 (75% of the dashboard's time). The copy is lazy after the sort, so slicing
    first gives the same documents in the same order.
    """
    from mongomock import helpers
    from mongomock.collection import Cursor

    whole = Cursor._compute_results

    def compute_results(self, with_limit_and_skip=False):
        if not with_limit_and_skip or not self._limit or self._results is not None:
            return whole(self, with_limit_and_skip)
        key = (self._factory, self._skip, self._limit)
        if self._page is None or self._page[0] != key:
            page = list(itertools.islice(self._factory(), self._skip, self._skip + abs(self._limit)))
            if self.collection.codec_options.tz_aware:
                page = [helpers.make_datetime_timezone_aware_in_document(doc) for doc in page]
            self._page = (key, page)
        return self._page[1]

    Cursor._compute_results = compute_results
    Cursor._page = None


def connect(settings: Settings):
    """Return (client, database) for the configured store. Call inside the running loop."""
    if settings.embedded:
        from mongomock_motor import AsyncMongoMockClient

        _index_embedded_id_lookups()

        log.warning("MONGODB_URI is memory:// — using the embedded in-process store; "
                    "NO DATA IS PERSISTED. Set MONGODB_URI=mongodb://… for production.")
        client = AsyncMongoMockClient()
    else:
        from motor.motor_asyncio import AsyncIOMotorClient

        client = AsyncIOMotorClient(settings.mongodb_uri, tz_aware=True,
                                    serverSelectionTimeoutMS=5000)
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
    await db.login_attempts.create_index("window_start", expireAfterSeconds=86400)
    await db.rate_limits.create_index("expires_at", expireAfterSeconds=0)
