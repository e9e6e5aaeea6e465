"""Speed-ups for the embedded store (mongomock, behind `MONGODB_URI=memory://`).

mongomock has no indexes and answers every query by evaluating the filter on every
document, sorting through a BSON-comparison wrapper, and copying every match through its
general projection code. The gateway's hot path (balance updates by `_id`) and its pages
(one user's records, sorted by time, one page at a time) need far less. Each patch below
short-cuts one of those steps only where its answer cannot differ from mongomock's, and
falls back to mongomock everywhere else; tests/test_db.py compares each with mongomock's
own answers. A real MongoDB (Motor) is never touched by this module.
"""
from __future__ import annotations

import datetime
import itertools

from bson import ObjectId


def speed_up_mongomock() -> None:
    """Make mongomock (the embedded store) fast where the gateway leans on it, without
    changing any result: tests/test_db.py checks each against mongomock's own answers."""
    from mongomock.collection import Collection

    if getattr(Collection, "_cheaplm_patched", False):
        return
    Collection._cheaplm_patched = True
    _look_up_ids_and_equalities()
    _copy_only_the_page()
    _sort_and_project_directly()


def _look_up_ids_and_equalities() -> None:
    """Answer `{"_id": value, …}` filters from mongomock's id-keyed store, and decide simple
    terms on top-level fields without mongomock's filter machinery.

    mongomock evaluates every filter against every document: the balance updates on the
    hot path (always by `_id`) slowed down linearly with the number of users, and a query
    for one user's 20,000 usage records spent ~25 ms in filter evaluation. These terms on
    top-level fields are decided directly when the document holds a value of the same type:
    `{field: value}` with a string, integer, bool or ObjectId; `{"$in": [...]}` of strings,
    integers or ObjectIds; `$gt`/`$gte`/`$lt`/`$lte` with a string or integer. Every other
    case (other types, arrays, missing fields, other operators, dotted fields) still goes
    through mongomock's `filter_applies`, which checks the whole filter whenever a term
    was undecided.
    """
    from mongomock.collection import Collection
    from mongomock.filtering import filter_applies

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
        terms = [(k, test) for k, v in filter.items() if k[:1] != "$" and "." not in k
                 for test in [_term_test(v)] if test is not None]
        if not terms:
            return scan(self, filter)
        return _term_scan(list(self._store.documents), filter, terms, len(terms) == len(filter), filter_applies)

    Collection._iter_documents = iter_documents


_EQUAL_TYPES = (str, int, bool, ObjectId)
_IN_TYPES = (str, int, ObjectId)
_COMPARE = {"$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b,
            "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b}


def _term_test(condition):
    """For a filter term's condition, a function of the held value answering True (matches),
    False (cannot match) or None (ask mongomock); None if the condition is not simple."""
    if type(condition) in _EQUAL_TYPES:
        kind = type(condition)
        return lambda held: (held == condition) if type(held) is kind else None
    if not isinstance(condition, dict) or not condition:
        return None
    tests = []
    for op, value in condition.items():
        if op == "$in" and isinstance(value, list) and all(type(v) in _IN_TYPES for v in value):
            # No bools: mongomock's $in, unlike MongoDB's, finds 1 in [True].
            pairs = {(type(v), v) for v in value}
            tests.append(lambda held, pairs=pairs:
                         ((type(held), held) in pairs) if type(held) in _IN_TYPES else None)
        elif op in _COMPARE and type(value) in (str, int):
            compare, kind = _COMPARE[op], type(value)
            tests.append(lambda held, c=compare, v=value, k=kind: c(held, v) if type(held) is k else None)
        else:
            return None

    def test(held):
        verdict = True
        for one in tests:
            answer = one(held)
            if answer is False:
                return False
            if answer is None:
                verdict = None
        return verdict
    return test


def _term_scan(docs, filter, terms, terms_are_whole_filter, filter_applies):
    for doc in docs:
        verdict = True  # True: every term matches; None: some term needs mongomock
        for key, test in terms:
            answer = test(doc.get(key, _MISSING))
            if answer is False:
                verdict = False
                break
            if answer is None:
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
        if with_limit_and_skip and not self._limit and not self._skip:
            # mongomock slices a copy of the whole result for every document it emits
            # (O(n²) when reading n documents); without skip or limit there is nothing to cut.
            return whole(self, False)
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
    if all(type(v) in (int, float) for v in values):
        return True
    if all(type(v) is datetime.datetime for v in values):
        return len({v.tzinfo is None for v in values}) <= 1
    return all(type(v) is ObjectId for v in values)


def _sort_and_project_directly() -> None:
    """Sort on plain values when that gives MongoDB's order, and copy simple projections
    without mongomock's general projection code.

    mongomock wraps every sort value in an object whose `<` decides the BSON type order
    first: sorting 20,000 usage records by time cost ~100 ms, most of a dashboard page.
    When every value of a sort key is a number, a datetime or an ObjectId, Python's own
    comparison is that order; anything else (missing fields, arrays, mixed types, dotted
    keys) goes through mongomock's comparison as before. Each key is a stable sort, last
    key first, exactly as mongomock does it. A projection naming only top-level fields,
    all included or all excluded, is applied field by field with mongomock's own copy.
    """
    from operator import itemgetter

    from mongomock import filtering
    from mongomock.collection import Collection, _copy_field

    whole = Collection._get_dataset

    def get_dataset(self, spec, sort, fields, as_class):
        keys = list(sort.items() if isinstance(sort, dict) else sort or ())
        project = _simple_projection(fields, as_class, _copy_field)
        if any(k.startswith("$") or "." in k for k, _ in keys) or (project is None and not keys):
            yield from whole(self, spec, sort, fields, as_class)
            return
        docs = self._iter_documents(spec)
        if keys:
            docs = list(docs)
        for key, direction in reversed(keys):
            values = [doc.get(key, _MISSING) for doc in docs]
            if _native_order(values):
                docs = [doc for _, doc in sorted(zip(values, docs), key=itemgetter(0), reverse=direction < 0)]
            else:
                docs = sorted(docs, key=lambda doc, k=key: filtering.resolve_sort_key(k, doc),
                              reverse=direction < 0)
        for doc in docs:
            yield project(doc) if project else self._copy_only_fields(doc, fields, as_class)

    Collection._get_dataset = get_dataset
    Collection._cheaplm_mongomock_get_dataset = whole  # the reference, for tests


def _simple_projection(fields, container, copy_field):
    """A function applying `fields` to a document the way mongomock does, for projections
    of top-level fields only, all included or all excluded (`_id` either way); None for
    anything else (no projection, dotted fields, operators)."""
    if not isinstance(fields, dict) or not fields:
        return None
    if any("." in k or k[:1] == "$" or type(v) not in (int, bool) for k, v in fields.items()):
        return None
    id_wanted = bool(fields.get("_id", 1))
    others = {k: bool(v) for k, v in fields.items() if k != "_id"}
    if len(set(others.values())) > 1:
        return None  # mongomock raises for a mix: let it

    def copy(value):  # immutable values need no copy; the rest as mongomock copies them
        return value if type(value) in _IMMUTABLE else copy_field(value, container)

    if any(others.values()) or (not others and id_wanted):
        keep = set(others) | ({"_id"} if id_wanted else set())
        return lambda doc: container((k, copy(v)) for k, v in doc.items() if k in keep)
    drop = set(others) | (set() if id_wanted else {"_id"})
    return lambda doc: container((k, copy(v)) for k, v in doc.items() if k not in drop)


_MISSING = object()
_IMMUTABLE = {str, int, float, bool, type(None), datetime.datetime, ObjectId}
