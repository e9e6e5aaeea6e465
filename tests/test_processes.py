"""Several gateway processes on one real database: money, rate limits and key freezes hold
across them. Skipped on the embedded tier (memory:// lives inside one process)."""
from __future__ import annotations

import asyncio
import collections
import itertools
import signal
import time

import httpx

from tests.processes import GatewayProcess, database, message_body

HEADERS = {"anthropic-version": "2023-06-01"}


async def _burst(urls: list[str], key: str, n: int, body: dict) -> list[int]:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def one(url: str) -> int:
            r = await client.post(url + "/v1/messages", json=body, headers={**HEADERS, "x-api-key": key})
            return r.status_code
        return await asyncio.gather(*(one(url) for url, _ in zip(itertools.cycle(urls), range(n))))


def test_concurrent_requests_over_three_processes_never_overdraw(server_database, upstream, processes):
    """`python app.py --processes 3`: 200 requests at once from one key whose balance covers
    about 7 holds. The balance never goes below zero (a hold needs the balance to cover it),
    the usage records add up to the balance change exactly, and nothing stays held."""
    gw = GatewayProcess(server_database, upstream, "--processes", "3")
    processes.append(gw)
    db = database(server_database)
    body = message_body("chunks=3 delay=0.05", stream=False)
    username, key = gw.user_with_key(100)
    one = httpx.post(gw.url + "/v1/messages", json=body, headers={**HEADERS, "x-api-key": key}, timeout=30)
    assert one.status_code == 200, one.text
    record = db.usage.find_one({"status": 200})
    hold = record["hold"]
    # Reset the balance to about 7 holds (an admin adjustment, through the API).
    user = db.users.find_one({"username": username})
    target = 7 * hold + hold // 2
    r = gw.admin.post(f"/admin/api/users/{username}/credits",
                      json={"amount": f"{(target - user['balance']) / 1_000_000:.6f}", "reason": "test"})
    assert r.status_code == 200, r.text
    before = db.users.find_one({"username": username})["balance"]
    statuses = asyncio.run(_burst([gw.url], key, 200, body))
    assert set(statuses) <= {200, 402, 403}, collections.Counter(statuses)
    assert statuses.count(200) >= 7
    pids = {r["pid"] for r in db.instances.find()}
    assert len(pids) == 3  # three processes took part (each registered its lease)
    user = db.users.find_one({"username": username})
    assert user["balance"] >= 0 and user["held"] == 0 and user["holds"] == []
    records = list(db.usage.find({"user_id": user["_id"], "request_id": {"$ne": record["request_id"]}}))
    assert len(records) == statuses.count(200)
    assert before - user["balance"] == sum(r["credits"] for r in records)
    gw.signal(signal.SIGTERM)
    assert gw.wait(30) == 0


def test_rate_limit_and_freezes_hold_across_processes(server_database, upstream, processes):
    """Three processes on their own ports, requests spread round-robin: a key limited to R
    per minute gets at most R + (N − 1) × max(1, R/20) through (services/gateway/ratelimit.py);
    a key frozen through one process is refused by every process within KEY_CACHE_SECONDS."""
    gws = [GatewayProcess(server_database, upstream, key_cache_seconds=1) for _ in range(3)]
    processes.extend(gws)
    urls = [g.url for g in gws]
    rpm = 40
    username, key = gws[0].user_with_key(100, rpm=rpm)
    if time.time() % 60 > 45:  # one fixed window per minute: do not straddle its end
        time.sleep(61 - time.time() % 60)
    statuses = asyncio.run(_burst(urls, key, 90, message_body(stream=False, max_tokens=10)))
    through = statuses.count(200)
    assert set(statuses) <= {200, 429}
    assert rpm <= through <= rpm + 2 * max(1, rpm // 20), (through, list(database(server_database).rate_limits.find()))

    # Freeze a fresh key through process 0; every process refuses it within the cache time.
    _, key2 = gws[0].user_with_key(100)
    for url in urls:  # cached in every process
        r = httpx.post(url + "/v1/messages", json=message_body(stream=False, max_tokens=10),
                       headers={**HEADERS, "x-api-key": key2}, timeout=30)
        assert r.status_code == 200, r.text
    key_id = database(server_database).api_keys.find_one({"prefix": {"$regex": "^" + key2[:7]}})["_id"]
    r = gws[0].admin.patch(f"/admin/api/keys/{key_id}", json={"frozen": True})
    assert r.status_code == 200, r.text
    time.sleep(1.5)  # KEY_CACHE_SECONDS=1
    for url in urls:
        r = httpx.post(url + "/v1/messages", json=message_body(stream=False, max_tokens=10),
                       headers={**HEADERS, "x-api-key": key2}, timeout=30)
        assert r.status_code in (401, 403), (url, r.status_code, r.text)
