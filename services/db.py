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

import datetime
import itertools
import logging

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.config import Settings

log = logging.getLogger(__name__)

__all__ = ["connect", "ensure_indexes", "ReturnDocument", "DuplicateKeyError", "PyMongoError",
           "ASCENDING", "DESCENDING", "AFTER"]

AFTER = ReturnDocument.AFTER


def _speed_up_embedded_store() -> None:
    """Make mongomock (the embedded store) fast where the gateway leans on it, without
    changing any result: tests/test_db.py checks each against mongomock's own answers."""
    from mongomock.collection import Collection

    if getattr(Collection, "_cheaplm_patched", False):
        return
    Collection._cheaplm_patched = True
    _look_up_ids_and_equalities()
    _copy_only_the_page()
    _sort_natively()


def _look_up_ids_and_equalities() -> None:
    """Answer `{"_id": value, …}` filters from mongomock's id-keyed store, and decide plain
    equalities on top-level fields without mongomock's filter machinery.

    mongomock evaluates every filter against every document: the balance updates on the
    hot path (always by `_id`) slowed down linearly with the number of users, and a query
    for one user's 20,000 usage records spent ~25 ms in filter evaluation. A term
    `{field: value}` whose value is a string, an integer, a bool or an ObjectId cannot match
    a document holding a different value of that same type, and does match one holding an
    equal value of it; every other case (other types, arrays, missing fields, operators,
    dotted fields) still goes through mongomock's `filter_applies`.
    """
    from bson import ObjectId
    from mongomock.collection import Collection
    from mongomock.filtering import filter_applies

    exact = {str, int, bool, ObjectId}
    scan = Collection._iter_documents

    def iter_documents(self, filter):
        if not isinstance(filter, dict) or not filter or self._store.is_empty:
            return scan(self, filter)
        doc_id = filter.get("_id")
        if doc_id is not None and not isinstance(doc_id, dict):
            try:
                doc = self._store[doc_id] if doc_id in self._store else None
            except TypeError:  # an unhashable _id value: the scan below decides
                pass
            else:
                return iter([doc] if doc is not None and filter_applies(filter, doc) else [])
        terms = [(k, v) for k, v in filter.items() if type(v) in exact and k[0] != "$" and "." not in k]
        if not terms:
            return scan(self, filter)
        return _equality_scan(list(self._store.documents), filter, terms, len(terms) == len(filter),
                              filter_applies)

    Collection._iter_documents = iter_documents


def _equality_scan(docs, filter, terms, terms_are_whole_filter, filter_applies):
    for doc in docs:
        verdict = True  # True: every term matches; None: some term needs mongomock
        for key, value in terms:
            held = doc.get(key, _MISSING)
            if type(held) is type(value):
                if held != value:
                    verdict = False
                    break
            else:
                verdict = None
        if verdict is False:
            continue
        if (verdict and terms_are_whole_filter) or filter_applies(filter, doc):
            yield doc


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


def _native_order(values: list) -> bool:
    """Whether Python's own ordering of these values is MongoDB's: all numbers, all
    datetimes of one kind (naive or aware), or all ObjectIds."""
    from bson import ObjectId

    if all(type(v) in (int, float) for v in values):
        return True
    if all(type(v) is datetime.datetime for v in values):
        return len({v.tzinfo is None for v in values}) <= 1
    return all(type(v) is ObjectId for v in values)


def _sort_natively() -> None:
    """Sort on plain values when that gives MongoDB's order.

    mongomock wraps every sort value in an object whose `<` decides the BSON type order
    first: sorting 20,000 usage records by time cost ~100 ms, most of a dashboard page.
    When every value of a sort key is a number, a datetime or an ObjectId, Python's own
    comparison is that order; anything else (missing fields, arrays, mixed types, dotted
    keys) goes through mongomock's comparison as before. Each key is a stable sort, last
    key first, exactly as mongomock does it.
    """
    from operator import itemgetter

    from mongomock import filtering
    from mongomock.collection import Collection

    whole = Collection._get_dataset

    def get_dataset(self, spec, sort, fields, as_class):
        keys = list(sort.items() if isinstance(sort, dict) else sort or ())
        if not keys or any(k.startswith("$") or "." in k for k, _ in keys):
            yield from whole(self, spec, sort, fields, as_class)
            return
        docs = list(self._iter_documents(spec))
        for key, direction in reversed(keys):
            values = [doc.get(key, _MISSING) for doc in docs]
            if _native_order(values):
                docs = [doc for _, doc in sorted(zip(values, docs), key=itemgetter(0), reverse=direction < 0)]
            else:
                docs = sorted(docs, key=lambda doc, k=key: filtering.resolve_sort_key(k, doc),
                              reverse=direction < 0)
        for doc in docs:
            yield self._copy_only_fields(doc, fields, as_class)

    Collection._get_dataset = get_dataset


_MISSING = object()


def connect(settings: Settings):
    """Return (client, database) for the configured store. Call inside the running loop."""
    if settings.embedded:
        from mongomock_motor import AsyncMongoMockClient

        _speed_up_embedded_store()

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
