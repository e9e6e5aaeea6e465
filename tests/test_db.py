"""The database handle: each collection looked up once, and the indexes the services rely on
(unique ones refuse a second document with the same key)."""
from __future__ import annotations

import asyncio

import pytest

from services.config import Settings
from services.store import db as dbmod


def embedded():
    _, db = dbmod.connect(Settings.from_env({"MONGODB_URI": "memory://"}))
    return db


def test_collections_are_looked_up_once():
    """`db.users` is the same collection object every time, by attribute or by key."""
    db = embedded()
    assert db.users is db.users and db["users"] is db.users


@pytest.mark.parametrize("collection, field", [("users", "username_lower"), ("api_keys", "key_hash"),
                                               ("topup_codes", "code_hash"), ("login_attempts", "key")])
def test_unique_indexes_refuse_duplicates(collection, field):
    """After ensure_indexes, a second document with the same unique key is refused."""
    async def run():
        db = embedded()
        await dbmod.ensure_indexes(db)
        await db[collection].insert_one({field: "same"})
        with pytest.raises(dbmod.DuplicateKeyError):
            await db[collection].insert_one({field: "same"})
        return await db[collection].count_documents({})

    assert asyncio.run(run()) == 1
