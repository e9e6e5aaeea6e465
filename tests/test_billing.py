"""Credits: the documented formula, holds that never overdraw, settlement exactly once."""
from __future__ import annotations

import datetime as dt
import json
import threading

import httpx

from services.core.types import Usage
from services.gateway.relay import CallRecord
from tests.fake_upstream import Scenario

HELLO = [{"role": "user", "content": "Hello"}]


def call(gw, key, **body) -> httpx.Response:
    payload = {"model": "claude-sonnet-4", "max_tokens": 100, "messages": HELLO, **body}
    return httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key}, timeout=30, content=json.dumps(payload))


def test_formula_counts_all_four_token_buckets(gateway):
    """credits_used = (input + cache creation + cache read + output) / 1000 × cost_per_1k, exactly."""
    username, key = gateway.user_with_key(credits=10)
    usage = {"input_tokens": 100, "output_tokens": 50, "cache_creation_input_tokens": 1000,
             "cache_read_input_tokens": 2000}
    gateway.fake.enqueue(Scenario(usage=usage))
    r = call(gateway, key)
    assert r.status_code == 200
    assert r.headers["x-cheaplm-credits-used"] == "0.4095"  # 3150 tokens × 0.13 / 1000
    assert r.headers["x-cheaplm-credits-remaining"] == "9.5905"
    profile = httpx.get(gateway.url + "/v1/profile", headers={"Authorization": f"Bearer {key}"}).json()
    assert profile == {"username": username, "credits": 9.5905, "key_name": "test key"}
    row = gateway.usage(username)[0]
    assert (row["input_tokens"], row["output_tokens"], row["cache_creation_input_tokens"],
            row["cache_read_input_tokens"], row["total_tokens"], row["credits"]) == (100, 50, 1000, 2000, 3150, 409_500)


def test_streamed_usage_uses_latest_counters_never_sums(gateway):
    """In a stream, message_start and message_delta counters are merged by taking the latest value."""
    username, key = gateway.user_with_key(credits=10)
    gateway.fake.enqueue(Scenario(usage={"input_tokens": 40, "output_tokens": 60, "cache_read_input_tokens": 500}))
    r = call(gateway, key, stream=True)
    assert "message_stop" in r.text
    row = gateway.usage(username)[0]
    assert row["total_tokens"] == 600 and row["credits"] == 600 * 130 and row["stream"] is True
    assert gateway.micro_balance(username) == (10_000_000 - 78_000, 0)


def test_haiku_and_opus_prices(gateway):
    """Each model is billed at its own catalog price (Haiku 0.04, Opus 0.22 per 1K)."""
    username, key = gateway.user_with_key(credits=10)
    assert call(gateway, key, model="claude-3-5-haiku-latest").headers["x-cheaplm-credits-used"] == "0.007"
    assert call(gateway, key, model="claude-opus-4.6").headers["x-cheaplm-credits-used"] == "0.0385"


def test_ledger_records_every_movement_with_running_balance(gateway):
    """Top-ups and usage appear in the ledger; the last running balance equals the profile."""
    username, key = gateway.user_with_key(credits=5)
    call(gateway, key)
    gateway.admin.post(f"/admin/api/users/{username}/credits", json={"amount": 2.5, "reason": "bonus"})
    user = gateway.run(gateway.services.users.by_username(username))
    ledger = gateway.run(gateway.services.billing.ledger(user["_id"]))
    assert [e["kind"] for e in ledger] == ["adjustment", "usage", "adjustment"]
    assert [e["amount"] for e in ledger] == [2_500_000, -22_750, 5_000_000]
    assert ledger[0]["balance_after"] == 7_477_250 == sum(e["amount"] for e in ledger)


def test_parallel_requests_never_overdraw(gateway):
    """Many parallel requests against a small balance: no overdraft, and usage sums to the balance change."""
    username, key = gateway.user_with_key(credits=0.3)
    start_balance = gateway.micro_balance(username)[0]
    observed: list[int] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            observed.append(gateway.micro_balance(username)[0])

    statuses: list[int] = []

    def one():
        r = call(gateway, key, max_tokens=500, stream=True,
                 messages=[{"role": "user", "content": "[[scenario: chunks=3 delay=0.02]]"}])
        statuses.append(r.status_code)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=one) for _ in range(40)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    stop.set()
    watcher.join()
    ok = statuses.count(200)
    assert ok >= 1 and set(statuses) <= {200, 402, 403}
    assert len(statuses) - ok >= 1  # the balance really was the limit
    balance, held = gateway.micro_balance(username)
    rows = gateway.usage(username)
    assert held == 0
    assert min(observed + [balance]) >= 0
    assert sum(r["credits"] for r in rows) == start_balance - balance
    assert len([r for r in rows if r["status"] == 200]) == ok


def test_settle_is_exactly_once(gateway):
    """Settling the same hold twice debits once."""
    username, _ = gateway.user_with_key(credits=10)
    s = gateway.services

    async def scenario():
        from services.core.types import Principal
        user = await s.users.by_username(username)
        p = Principal(user_id=user["_id"], username=username, key_id=None, key_name="k")
        model = s.catalog.resolve("claude-sonnet-4")
        hold = await s.billing.hold(p, model, request_id="req_once", est_input_tokens=10, max_tokens=100)
        record = CallRecord("messages", stream=False, usage=Usage(input_tokens=10, output_tokens=90))
        first = await s.billing.settle(hold, record)
        await s.billing.settle(hold, record)
        return first.cost

    assert gateway.run(scenario()) == 13_000
    assert gateway.micro_balance(username) == (10_000_000 - 13_000, 0)
    assert len(gateway.usage(username)) == 1


def test_stale_holds_released_at_start_up(gateway):
    """A hold left by a crashed request is released, and an 'abandoned' usage record marks it."""
    username, _ = gateway.user_with_key(credits=10)
    db = gateway.services.db
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    fresh = dt.datetime.now(dt.timezone.utc)
    gateway.run(db.users.update_one({"username": username}, {
        "$inc": {"balance": -1_500_000, "held": 1_500_000},
        "$push": {"holds": {"$each": [f"req_crashed 1000000 {int(old.timestamp())}",
                                      f"req_running 500000 {int(fresh.timestamp())}"]}}}))
    assert gateway.micro_balance(username) == (8_500_000, 1_500_000)
    released = gateway.run(gateway.services.billing.release_stale_holds(
        older_than=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)))
    assert released == 1, "only the hold older than the cut-off is released"
    assert gateway.micro_balance(username) == (9_500_000, 500_000)
    assert gateway.usage(username)[0]["status"] == "abandoned"


def test_key_credit_cap_limits_spend(gateway):
    """A key with a credit cap stops at its cap even when the account has more credits."""
    username = gateway.create_user(credits=100)
    key = gateway.create_key(username, credit_cap=0.06)
    assert call(gateway, key).status_code == 200  # costs 0.02275 of a ~0.028 hold: 0.03725 left
    assert call(gateway, key).status_code == 200  # 0.0145 left: below the next hold
    r = call(gateway, key)
    assert r.status_code == 402 and "credit cap" in r.json()["error"]["message"]
    assert gateway.micro_balance(username) == (100_000_000 - 2 * 22_750, 0)


def test_allowed_models_limit(gateway):
    """A key limited to some models is refused others with 403."""
    username = gateway.create_user(credits=10)
    key = gateway.create_key(username, allowed_models=["claude-haiku-3-5-20241022"])
    assert call(gateway, key, model="claude-haiku-3-5").status_code == 200
    assert call(gateway, key).status_code == 403


def test_key_cap_stays_exact_when_changed_or_recovered_with_requests_in_flight(gateway):
    """A request in flight holds part of its key's cap: changing the cap meanwhile moves the
    cap by the difference (the settlement's refund is not counted twice), and start-up
    recovery gives a released hold back to the key's cap as well as to the balance."""
    username = gateway.create_user(credits=100)
    key = gateway.create_key(username, credit_cap=1)
    s = gateway.services
    model = s.catalog.resolve("claude-sonnet-4")

    async def cap_left(principal):
        return (await s.keys.get(principal.key_id))["cap_left"]

    async def scenario():
        p = await s.keys.authenticate(key)
        hold = await s.billing.hold(p, model, request_id="req_inflight", est_input_tokens=100,
                                    max_tokens=1000)
        assert await cap_left(p) == 1_000_000 - hold.amount
        limits = {"credit_cap": "1.5", "expires_at": None, "allowed_models": None, "rpm": None}
        await s.keys.update(p.key_id, limits=limits)  # raise the cap while the request runs
        assert await cap_left(p) == 1_500_000 - hold.amount
        await s.keys.update(p.key_id, limits=limits)  # saving the same cap changes nothing
        receipt = await s.billing.settle(hold, CallRecord("messages", stream=False,
                                                         usage=Usage(input_tokens=25, output_tokens=150)))
        settled = await cap_left(p)

        crashed = await s.billing.hold(p, model, request_id="req_crashed", est_input_tokens=100,
                                       max_tokens=1000)
        assert await cap_left(p) == settled - crashed.amount
        released = await s.billing.release_stale_holds(
            older_than=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5))
        return receipt.cost, settled, released, await cap_left(p)

    cost, settled, released, recovered = gateway.run(scenario())
    assert cost == 22_750 and settled == 1_500_000 - cost
    assert released == 1 and recovered == settled
    assert gateway.micro_balance(username) == (100_000_000 - cost, 0)
