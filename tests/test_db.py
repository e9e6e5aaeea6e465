"""The embedded store's speed-ups (services/embedded.py) return exactly what mongomock would:
_id lookups, plain equalities, native sorts, pages copied after the sort, collections
looked up once. mongomock's own filter_applies and sort keys are the reference."""
from __future__ import annotations

import asyncio
import datetime as dt

from bson import ObjectId
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mongomock.filtering import filter_applies, resolve_sort_key

from services.config import Settings
from services.store import db as dbmod

DOCS = st.lists(st.fixed_dictionaries({"user": st.integers(0, 3), "n": st.integers(-5, 5),
                                       "tag": st.sampled_from(["a", "b", "c"])}), max_size=40)


def embedded():
    _, db = dbmod.connect(Settings.from_env({"MONGODB_URI": "memory://"}))
    return db


@settings(max_examples=80, deadline=None)
@given(docs=DOCS, user=st.integers(0, 3), direction=st.sampled_from([1, -1]), skip=st.integers(0, 10),
       limit=st.integers(0, 12), projected=st.booleans())
def test_a_page_is_the_slice_of_the_whole_result(docs, user, direction, skip, limit, projected):
    async def run():
        db = embedded()
        if docs:
            await db.items.insert_many([dict(d, seq=i) for i, d in enumerate(docs)])
        projection = {"_id": 0, "n": 1, "seq": 1} if projected else {"_id": 0}
        sort = [("n", direction), ("seq", 1)]
        whole = await db.items.find({"user": user}, projection).sort(sort).to_list(None)
        page = await db.items.find({"user": user}, projection).sort(sort).skip(skip).limit(limit).to_list(None)
        return whole, page

    whole, page = asyncio.run(run())
    assert page == (whole[skip:skip + limit] if limit else whole[skip:])


@settings(max_examples=40, deadline=None)
@given(docs=DOCS, pick=st.integers(0, 39), tag=st.sampled_from(["a", "b", "c"]))
def test_id_lookup_applies_the_rest_of_the_filter(docs, pick, tag):
    async def run():
        db = embedded()
        if docs:
            await db.items.insert_many([dict(d, _id=f"id{i}") for i, d in enumerate(docs)])
        return await db.items.find_one({"_id": f"id{pick}", "tag": tag})

    found = asyncio.run(run())
    expected = docs[pick] if pick < len(docs) and docs[pick]["tag"] == tag else None
    assert (None if found is None else {k: found[k] for k in ("user", "n", "tag")}) == expected


def test_collections_are_looked_up_once():
    db = embedded()
    assert db.users is db.users and db["users"] is db.users


IDS = [ObjectId("0123456789ab0123456789a%d" % i) for i in range(3)]
# Values of the types the fast paths decide, and of the types they must leave to mongomock,
# from small pools so that equal and same-looking values (1, 1.0, True, [1]) meet often.
VALUES = st.sampled_from([*IDS[:2], 0, 1, True, False, "a", "", None, 0.0, 1.0, float("nan"), [1], [0, 1], []])
TIMES = [dt.datetime(2026, 11, d, h) for d in (1, 2) for h in (0, 12)]
SORT_VALUES = st.one_of(st.integers(-2, 2), st.floats(-2, 2), st.sampled_from(TIMES), st.sampled_from(IDS),
                        st.sampled_from(["a", "b", True, None, [1], [2, 0]]))
MISSING = object()


def with_field(name: str, values):
    """Documents that may lack the field."""
    return st.lists(st.tuples(st.one_of(values, st.just(MISSING)), st.integers(0, 3)), max_size=30).map(
        lambda rows: [{**({} if v is MISSING else {name: v}), "g": g, "seq": i} for i, (v, g) in enumerate(rows)])


async def stored(docs):
    db = embedded()
    if docs:
        await db.items.insert_many([dict(d) for d in docs])
    return db


@settings(max_examples=300, deadline=None)
@given(docs=with_field("f", VALUES), value=VALUES.filter(lambda v: not isinstance(v, list)),
       also=st.one_of(st.none(), st.integers(0, 3)))
@example(docs=[{"f": [1], "g": 0, "seq": 0}], value=1, also=None)          # an array holding the value
@example(docs=[{"f": 1, "g": 0, "seq": 0}], value=True, also=None)         # bool is not int
@example(docs=[{"f": float("nan"), "g": 0, "seq": 0}], value=float("nan"), also=None)  # NaN equals NaN
def test_equality_filters_match_what_mongomock_matches(docs, value, also):
    query = {"f": value} if also is None else {"f": value, "g": {"$gte": also}}

    async def run():
        return await (await stored(docs)).items.find(query, {"_id": 0}).to_list(None)

    got = [d["seq"] for d in asyncio.run(run())]
    assert got == [d["seq"] for d in docs if filter_applies(query, d)]


@settings(max_examples=300, deadline=None)
@given(docs=with_field("t", SORT_VALUES), first=st.sampled_from([1, -1]), second=st.sampled_from([None, 1, -1]))
@example(docs=[{"t": True, "g": 0, "seq": 0}, {"t": 2, "g": 0, "seq": 1}], first=1, second=None)  # bools after numbers
@example(docs=[{"t": 1, "g": 0, "seq": 0}, {"g": 0, "seq": 1}], first=1, second=None)  # missing sorts first
def test_sorts_order_as_mongomock_orders(docs, first, second):
    sort = [("t", first)] + ([("g", second)] if second else [])

    async def run():
        return await (await stored(docs)).items.find({}, {"_id": 0}).sort(sort).to_list(None)

    expected = list(docs)
    for key, direction in reversed(sort):
        expected = sorted(expected, key=lambda d, k=key: resolve_sort_key(k, d), reverse=direction < 0)
    assert [d["seq"] for d in asyncio.run(run())] == [d["seq"] for d in expected]


PROJECTIONS = [{"_id": 0}, {"_id": 1}, {"a": 1}, {"a": 1, "_id": 0}, {"a": True, "b": 1}, {"a": 0},
               {"a": 0, "b": 0, "_id": 0}, {"b": False, "_id": 1}, {}]
NESTED = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none(), st.sampled_from(TIMES + IDS),
                   st.lists(st.integers(-5, 5), max_size=2),
                   st.dictionaries(st.sampled_from("xy"), st.integers(-5, 5), max_size=2))


@settings(max_examples=200, deadline=None)
@given(docs=st.lists(st.dictionaries(st.sampled_from("abc"), NESTED, max_size=3), max_size=5),
       projection=st.sampled_from(PROJECTIONS))
def test_projections_copy_what_mongomock_copies(docs, projection):
    import mongomock
    from mongomock.collection import Collection

    embedded()  # installs the speed-ups
    collection = mongomock.MongoClient().db.items
    if docs:
        collection.insert_many([dict(d, _id=i) for i, d in enumerate(docs)])
    got = list(collection.find({}, dict(projection)))
    expected = list(Collection._cheaplm_mongomock_get_dataset(collection, {}, None, dict(projection), dict))
    assert got == expected
    stored = list(collection._store.documents)
    for doc in got:  # copies: changing a result never changes the stored document
        for value in doc.values():
            if isinstance(value, (list, dict)):
                assert all(value is not v for s in stored for v in s.values())


CONDITIONS = st.one_of(
    st.lists(VALUES.filter(lambda v: not isinstance(v, list)), max_size=3).map(lambda vs: {"$in": vs}),
    st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), VALUES).map(lambda t: {t[0]: t[1]}),
    st.tuples(st.sampled_from(["$gt", "$lte"]), st.integers(-1, 2), st.sampled_from(["$lt", "$ne"]),
              st.integers(-1, 2)).map(lambda t: {t[0]: t[1], t[2]: t[3]}))


@settings(max_examples=300, deadline=None)
@given(docs=with_field("f", VALUES), condition=CONDITIONS, also=st.one_of(st.none(), st.integers(0, 3)))
@example(docs=[{"f": 1, "g": 0, "seq": 0}], condition={"$in": [True]}, also=None)
@example(docs=[{"f": [1], "g": 0, "seq": 0}], condition={"$in": [1]}, also=None)
@example(docs=[{"f": "b", "g": 0, "seq": 0}, {"f": 1, "g": 0, "seq": 1}], condition={"$gte": "a"}, also=None)
def test_operator_filters_match_what_mongomock_matches(docs, condition, also):
    query = {"f": condition} if also is None else {"f": condition, "g": also}

    async def run():
        return await (await stored(docs)).items.find(query, {"_id": 0}).to_list(None)

    assert [d["seq"] for d in asyncio.run(run())] == [d["seq"] for d in docs if filter_applies(query, d)]
