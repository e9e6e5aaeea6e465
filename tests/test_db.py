"""The embedded store's speed-ups (services/db.py) return exactly what mongomock would:
_id lookups from the id-keyed store, pages copied after the sort, collections cached."""
from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from services import db as dbmod
from services.config import Settings

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
