"""The real server under the server tier gives what the services rely on: single-document
writes that stay atomic when many clients write one document at once, and every query and
update form the services use, through the production driver (services/store/db.py).

Runs only on the server tier (TEST_MONGODB_URI; `python3 dev.py test` starts FerretDB)."""
from __future__ import annotations

import asyncio

import pytest

from services.config import Settings
from services.store import db as dbmod
from tests.conftest import ferretdb_version

CONCURRENCY = 200


def connect(server_database: dict, driver: str = "production"):
    """(client, database handle) through the production connect(), or through the named
    driver wrapped in the same handle (both must serve the services unchanged)."""
    if driver == "production":
        settings = Settings.from_env({}, cookie_secret="test-cookie-secret-0123456789", **server_database)
        return dbmod.connect(settings)
    if driver == "motor":
        from motor.motor_asyncio import AsyncIOMotorClient as Client
    else:
        from pymongo import AsyncMongoClient as Client
    client = Client(server_database["mongodb_uri"], tz_aware=True, serverSelectionTimeoutMS=5000)
    return client, dbmod.Database(client[server_database["mongodb_db"]])


async def close(client) -> None:
    closed = client.close()  # Motor's close() returns None, AsyncMongoClient's a coroutine
    if asyncio.iscoroutine(closed):
        await closed


def test_concurrent_updates_of_one_document_are_atomic(server_database):
    """200 clients at once: every `$inc` lands, and a conditional update never takes a
    balance below zero (FerretDB 1.x without tools/ferretdb.py's patch loses ~90% here)."""
    async def scenario():
        client, db = connect(server_database)
        try:
            await db.users.insert_one({"_id": "u", "count": 0, "balance": 50, "holds": []})
            await asyncio.gather(*(db.users.update_one({"_id": "u"}, {"$inc": {"count": 1}})
                                   for _ in range(CONCURRENCY)))
            taken = await asyncio.gather(*(db.users.find_one_and_update(
                {"_id": "u", "balance": {"$gte": 1}},
                {"$inc": {"balance": -1}, "$push": {"holds": f"req_{i}"}}) for i in range(CONCURRENCY)))
            return await db.users.find_one({"_id": "u"}), sum(t is not None for t in taken)
        finally:
            await close(client)

    doc, granted = asyncio.run(scenario())
    version = ferretdb_version()
    hint = (f" — FerretDB {version} was not built by tools/ferretdb.py (see its ATOMIC_WRITES)"
            if version and "cheaplm" not in version else "")
    assert doc["count"] == CONCURRENCY, f"{CONCURRENCY - doc['count']} concurrent $inc lost{hint}"
    assert (granted, doc["balance"], len(doc["holds"])) == (50, 0, 50), hint


@pytest.mark.parametrize("driver", ["motor", "pymongo"])
def test_every_query_form_the_services_use(server_database, driver):
    """Cursor chains, to_list with and without a length, upserts with $setOnInsert, array
    operators, unique indexes and the count/update/delete forms, as the services call them,
    through Motor and through PyMongo's AsyncMongoClient alike."""
    async def scenario():
        client, db = connect(server_database, driver)
        out = {}
        try:
            await dbmod.ensure_indexes(db)
            await db.usage.insert_many([{"user_id": "u", "seq": i, "model": "m" if i % 2 else "n"}
                                        for i in range(30)])
            page = await db.usage.find({"user_id": "u"}, {"_id": 0, "seq": 1}).sort(
                "seq", -1).skip(5).limit(11).to_list(11)
            out["page"] = [d["seq"] for d in page]
            out["all"] = len(await db.usage.find({"model": {"$in": ["m"]}}).to_list(None))
            out["multi_sort"] = [d["seq"] for d in await db.usage.find({"seq": {"$lt": 4}}).sort(
                [("model", 1), ("seq", -1)]).to_list(None)]
            out["streamed"] = [d["seq"] async for d in db.usage.find({"seq": {"$gte": 27}}).sort("seq", 1)]
            out["count"] = await db.usage.count_documents({"model": "n", "seq": {"$gt": 10}})
            for credits in (3, 4):
                await db.usage_daily.update_one({"_id": "u:day"}, {"$inc": {"credits": credits},
                                                                  "$setOnInsert": {"day": "day"}}, upsert=True)
            out["rollup"] = await db.usage_daily.find_one({"_id": "u:day"})
            await db.users.insert_one({"_id": "a", "username_lower": "alice", "holds": ["x 1 0", "y 2 0"]})
            try:
                await db.users.insert_one({"username_lower": "alice"})
                out["unique"] = "accepted"
            except dbmod.DuplicateKeyError:
                out["unique"] = "refused"
            out["holding"] = [d["_id"] for d in await db.users.find({"holds.0": {"$exists": True}}).to_list(None)]
            pulled = await db.users.find_one_and_update({"_id": "a", "holds": "x 1 0"}, {"$pull": {"holds": "x 1 0"}},
                                                        return_document=dbmod.AFTER)
            out["pulled"] = pulled["holds"]
            await db.meta.update_one({"_id": "seed"}, {"$addToSet": {"ids": {"$each": ["a", "b", "a"]}}}, upsert=True)
            out["seed"] = sorted((await db.meta.find_one({"_id": "seed"}))["ids"])
            out["updated"] = (await db.usage.update_many({"model": "m"}, {"$set": {"seen": True}})).modified_count
            out["not_seen"] = await db.usage.count_documents({"seen": {"$ne": True}})
            out["deleted"] = (await db.usage.delete_many({"seq": {"$gte": 20}})).deleted_count
        finally:
            await close(client)
        return out

    out = asyncio.run(scenario())
    assert out["page"] == list(range(24, 13, -1))
    assert out["all"] == 15 and out["count"] == 9
    assert out["multi_sort"] == [3, 1, 2, 0] and out["streamed"] == [27, 28, 29]
    assert out["rollup"] == {"_id": "u:day", "credits": 7, "day": "day"}
    assert out["unique"] == "refused" and out["holding"] == ["a"] and out["pulled"] == ["y 2 0"]
    assert out["seed"] == ["a", "b"]
    assert (out["updated"], out["not_seen"], out["deleted"]) == (15, 15, 10)
