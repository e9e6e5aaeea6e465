"""Motor vs PyMongo's AsyncMongoClient on a real server: the gateway's database work per
request, N settlements at concurrency 50, one cell per driver.

One settlement is the five writes the gateway makes for every billed request
(services/billing/credits.py and usage.py), shaped as the services shape them:
    hold      users.find_one_and_update  balance ≥ amount → $inc balance/held, $push holds
    settle    users.find_one_and_update  holds = entry    → $inc balance/held, $pull holds
    usage     usage.insert_one            the usage record
    rollup    usage_daily.update_one      $inc + $setOnInsert, upsert, addressed by _id
    ledger    ledger.insert_one
No `projection` on the two find_one_and_update calls: FerretDB 1.24 has no findAndModify
`fields` (see README, Real-database test tier).

Prints, per driver: settlements/s, database operations/s, and CPU milliseconds per
settlement in this process (the driver, all its threads) and in the server. Cells run
alternately (motor, pymongo, motor, …) so drift on a shared machine hits both alike. At the
end every user's balance must equal its start minus the settlements' cost, with nothing
held; the run exits non-zero otherwise.

    .venv/bin/python bench/driver.py [--mongodb-uri mongodb://…] [--settlements 2000]
                                     [--concurrency 50] [--rounds 2] [--pin]

Without --mongodb-uri a throwaway FerretDB is started (tools/ferretdb.py); its CPU is read
from /proc. --pin puts the server on CPU 0 and this process on CPU 1.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import ferretdb  # noqa: E402

USERS = 10
START_BALANCE = 10**12
HOLD, COST = 28_000, 22_750
TOKENS = {"input_tokens": 25, "output_tokens": 150, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def make_client(driver: str, uri: str):
    if driver == "motor":
        from motor.motor_asyncio import AsyncIOMotorClient
        return AsyncIOMotorClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    from pymongo import AsyncMongoClient
    return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)


async def close(client) -> None:
    closed = client.close()  # Motor: None; AsyncMongoClient: a coroutine
    if asyncio.iscoroutine(closed):
        await closed


async def settle_once(db, user_id, n: int, day: str) -> None:
    entry = f"req_{n} {HOLD} {int(time.time())}"
    placed = await db.users.find_one_and_update(
        {"_id": user_id, "frozen": {"$ne": True}, "balance": {"$gte": HOLD}},
        {"$inc": {"balance": -HOLD, "held": HOLD}, "$push": {"holds": entry}})
    assert placed is not None
    before = await db.users.find_one_and_update(
        {"_id": user_id, "holds": entry},
        {"$inc": {"balance": HOLD - COST, "held": -HOLD}, "$pull": {"holds": entry}})
    assert before is not None
    now = dt.datetime.now(dt.timezone.utc)
    await db.usage.insert_one({
        "request_id": f"req_{n}", "user_id": user_id, "key_id": user_id, "key_name": "bench", "model": "m",
        **TOKENS, "total_tokens": 175, "credits": COST, "hold": HOLD, "created_at": now, "day": day,
        "endpoint": "/v1/messages", "stream": False, "status": 200, "latency_ms": 12, "upstream_request_id": "x"})
    group = {"user_id": user_id, "day": day, "key_id": user_id, "model": "m"}
    await db.usage_daily.update_one(
        {"_id": f"{user_id}:{day}:{user_id}:m"},
        {"$inc": {**TOKENS, "requests": 1, "credits": COST, "total_tokens": 175, "errors": 0},
         "$setOnInsert": group}, upsert=True)
    await db.ledger.insert_one({
        "user_id": user_id, "kind": "usage", "amount": -COST,
        "balance_after": before["balance"] + before["held"] - COST, "request_id": f"req_{n}",
        "note": "m · 175 tokens", "created_at": now})


def server_cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cell(driver: str, uri: str, database: str, settlements: int, concurrency: int,
               server_pid: int | None) -> dict:
    client = make_client(driver, uri)
    db = client[database]
    try:
        await db.users.delete_many({})
        users = [f"u{i}" for i in range(USERS)]
        await db.users.insert_many([{"_id": u, "balance": START_BALANCE, "held": 0, "holds": []} for u in users])
        day = dt.date.today().isoformat()
        for n in range(100):  # warm-up: connections open, collections exist
            await settle_once(db, users[n % USERS], -n - 1, day)
        counter = iter(range(settlements))

        async def worker():
            for n in counter:
                await settle_once(db, users[n % USERS], n, day)

        cpu, server_cpu, wall = time.process_time(), server_cpu_seconds(server_pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - wall
        cpu, server_cpu = time.process_time() - cpu, server_cpu_seconds(server_pid) - server_cpu
        per_user = settlements // USERS + 100 // USERS
        docs = await db.users.find({}).to_list(None)
        consistent = all(d["balance"] == START_BALANCE - per_user * COST and d["held"] == 0 and not d["holds"]
                         for d in docs)
        await client.drop_database(database)
    finally:
        await close(client)
    return {"driver": driver, "wall": wall, "rate": settlements / wall, "ops": 5 * settlements / wall,
            "cpu_ms": 1000 * cpu / settlements, "server_ms": 1000 * server_cpu / settlements,
            "consistent": consistent}


def pin(server_pid: int) -> None:
    for tid in os.listdir(f"/proc/{server_pid}/task"):
        os.sched_setaffinity(int(tid), {0})
    os.sched_setaffinity(0, {1})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mongodb-uri", help="server to use (default: start a throwaway FerretDB)")
    p.add_argument("--settlements", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2, help="cells per driver, run alternately")
    p.add_argument("--pin", action="store_true", help="server on CPU 0, this process on CPU 1")
    args = p.parse_args()
    args.settlements -= args.settlements % USERS  # every user settles as often
    server = None
    if args.mongodb_uri:
        uri, server_pid, label = args.mongodb_uri, None, args.mongodb_uri
    else:
        server = ferretdb.Server(ferretdb.find_or_build()).start()
        uri, server_pid, label = server.uri, server.process.pid, f"{server.binary.kind} ({server.binary.path})"
    try:
        if args.pin and server_pid:
            pin(server_pid)
        results = []
        for r in range(args.rounds):
            for driver in ("motor", "pymongo"):
                res = asyncio.run(cell(driver, uri, f"cheaplm_bench_driver_{os.getpid()}", args.settlements,
                                       args.concurrency, server_pid))
                print(f"  round {r + 1} {driver:8} {res['rate']:7.0f} settlements/s  "
                      f"client {res['cpu_ms']:.2f} ms  server {res['server_ms']:.2f} ms per settlement"
                      f"{'' if res['consistent'] else '  INCONSISTENT BALANCES'}", flush=True)
                results.append(res)
    finally:
        if server is not None:
            server.stop()
    import motor
    import pymongo
    print(f"\n**Driver cell**: {args.settlements:,} settlements (5 writes each) per cell at concurrency "
          f"{args.concurrency}, {USERS} users, {args.rounds} cells per driver run alternately; "
          f"server: {label}; Motor {motor.version}, PyMongo {pymongo.version}; median of the cells.\n")
    print("| driver | settlements/s | DB writes/s | client CPU ms / settlement | server CPU ms / settlement |")
    print("|---|---:|---:|---:|---:|")
    for driver, name in (("motor", "Motor (AsyncIOMotorClient)"), ("pymongo", "PyMongo AsyncMongoClient")):
        rows = [r for r in results if r["driver"] == driver]
        med = {k: statistics.median(r[k] for r in rows) for k in ("rate", "ops", "cpu_ms", "server_ms")}
        print(f"| {name} | {med['rate']:,.0f} | {med['ops']:,.0f} | {med['cpu_ms']:.2f} | {med['server_ms']:.2f} |")
    if not all(r["consistent"] for r in results):
        print("\nFAILED: some balances are not start − settlements × cost, or holds are left", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
