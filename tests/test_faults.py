"""Faults on the real server, with real gateway processes (`python app.py`): SIGTERM with
streams in flight, SIGKILL mid-stream beside a live process, the database going away and
coming back. Skipped on the embedded tier (each needs a database shared between processes)."""
from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.conftest import TEST_MONGODB_URI
from tests.processes import GatewayProcess, StreamReader, database, gauge, message_body

LONG = "chunks=200 delay=0.05"   # about 10 s
SHORT = "chunks=10 delay=0.05"   # about half a second


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def user_doc(db, username: str) -> dict:
    return db.users.find_one({"username": username})


def test_sigterm_finishes_short_streams_and_ends_long_ones_in_band(server_database, upstream, processes):
    gw = GatewayProcess(server_database, upstream, shutdown_grace_seconds=2)
    processes.append(gw)
    db = database(server_database)
    username, key = gw.user_with_key(100)
    before = user_doc(db, username)["balance"]
    long, short = StreamReader(gw.url, key, LONG), None
    assert long.first.wait(10)
    short = StreamReader(gw.url, key, SHORT)
    assert short.first.wait(10)
    gw.signal(signal.SIGTERM)
    assert gw.wait(30) == 0
    long.join(10), short.join(10)
    assert short.events and short.events[-1] == "message_stop", (short.events, short.error, short.status, long.events[-3:], long.error)  # finished within the grace
    assert long.events[-1] == "error" and "message_stop" not in long.events, long.events[-3:]
    user = user_doc(db, username)
    assert user["held"] == 0 and user["holds"] == []
    records = list(db.usage.find({"user_id": user["_id"]}))
    assert sorted(r["status"] for r in records) == [200, 503]
    ended = next(r for r in records if r["status"] == 503)
    assert ended["output_tokens"] > 0 and ended["credits"] > 0  # billed for what it delivered
    assert before - user["balance"] == sum(r["credits"] for r in records)
    assert db.instances.count_documents({}) == 0  # the lease was given up


def test_sigkill_releases_only_the_dead_process_holds_once(server_database, upstream, processes):
    a = GatewayProcess(server_database, upstream, instance_lease_seconds=1.5)
    b = GatewayProcess(server_database, upstream, instance_lease_seconds=1.5)
    processes += [a, b]
    db = database(server_database)
    username, key = a.user_with_key(100)
    before = user_doc(db, username)["balance"]
    on_a = StreamReader(a.url, key, LONG)
    on_b = StreamReader(b.url, key, "chunks=120 delay=0.05")
    assert on_a.first.wait(10) and on_b.first.wait(10)
    assert len(user_doc(db, username)["holds"]) == 2
    a.signal(signal.SIGKILL)
    a.wait(10)
    # B's recovery releases A's hold once A's lease has run out; B's own hold stays.
    wait_for(lambda: len(user_doc(db, username)["holds"]) == 1, 20, "the dead process's hold released")
    assert db.usage.count_documents({"status": "abandoned"}) == 1
    assert not on_b.events or on_b.events[-1] != "message_stop"  # B was still streaming
    on_b.join(30)
    assert on_b.events[-1] == "message_stop", on_b.events[-3:]
    # and B keeps serving
    r = httpx.post(b.url + "/v1/messages", json=message_body(stream=False),
                   headers={"x-api-key": key, "anthropic-version": "2023-06-01"}, timeout=30)
    assert r.status_code == 200, r.text
    user = user_doc(db, username)
    assert user["held"] == 0 and user["holds"] == []
    records = list(db.usage.find({"user_id": user["_id"]}))
    assert sorted(map(str, (r["status"] for r in records))) == ["200", "200", "abandoned"]
    assert before - user["balance"] == sum(r["credits"] for r in records)
    wait_for(lambda: db.usage.count_documents({"status": "abandoned"}) == 1, 3, "no second release")
    time.sleep(2)  # another recovery round: the release happened exactly once
    assert db.usage.count_documents({"status": "abandoned"}) == 1
    charged = sum(e["amount"] for e in db.ledger.find({"user_id": user["_id"], "kind": "usage"}))
    assert -charged == before - user["balance"]


@pytest.fixture
def private_server():
    """A FerretDB server of this test's own, which it may stop and start again."""
    from tools import ferretdb

    if not TEST_MONGODB_URI:
        pytest.skip("needs a real MongoDB server: set TEST_MONGODB_URI (python3 dev.py test does)")
    binary = ferretdb.find(log=lambda *_: None)
    if binary is None or binary.kind != "ferretdb":
        pytest.skip("needs a ferretdb binary (python3 tools/ferretdb.py build)")
    server = ferretdb.Server(binary).start()
    yield server
    server.stop()


@pytest.mark.database
def test_database_outage_fails_closed_and_recovers(private_server, upstream, processes):
    options = {"mongodb_uri": private_server.uri, "mongodb_db": "cheaplm_outage"}
    gw = GatewayProcess(options, upstream)
    processes.append(gw)
    db = database(options)
    username, key = gw.user_with_key(100)
    before = user_doc(db, username)["balance"]
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    assert httpx.post(gw.url + "/v1/messages", json=message_body(stream=False), headers=headers,
                      timeout=30).status_code == 200
    served = len(upstream.fake.requests)
    browser = httpx.Client(base_url=gw.url, follow_redirects=False, timeout=30)
    browser.get("/login")
    signed_in = browser.post("/login", data={"_xsrf": browser.cookies["_xsrf"], "username": username,
                                             "password": "password-123"})
    assert signed_in.status_code == 302, signed_in.text
    # A stream in flight when the database goes: its settlement is kept and retried.
    stream = StreamReader(gw.url, key, "chunks=40 delay=0.05")
    assert stream.first.wait(10)
    private_server.halt()
    stream.join(30)
    assert stream.events[-1] == "message_stop", stream.events[-3:]
    assert gauge(gw.metrics(), "cheaplm_pending_settlements") == 1
    # Requests fail closed, with retry-after, and never reach the upstream.
    for _ in range(2):
        r = httpx.post(gw.url + "/v1/messages", json=message_body(stream=False), headers=headers, timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["type"] == "overloaded_error" and r.headers["retry-after"]
    assert len(upstream.fake.requests) == served + 1  # only the stream
    page = browser.get("/dashboard")
    assert page.status_code == 503 and "maintenance" in page.text
    assert httpx.get(gw.url + "/readyz", timeout=30).status_code == 503
    # The server returns: the process recovers by itself and the settlement lands.
    private_server.start()
    wait_for(lambda: httpx.post(gw.url + "/v1/messages", json=message_body(stream=False), headers=headers,
                                timeout=30).status_code == 200, 60, "recovery")
    wait_for(lambda: gauge(gw.metrics(), "cheaplm_pending_settlements") == 0, 60, "pending settlement written")
    user = user_doc(db, username)
    assert user["held"] == 0 and user["holds"] == []
    records = list(db.usage.find({"user_id": user["_id"]}))
    assert len(records) == 3 and all(r["status"] == 200 for r in records)
    assert before - user["balance"] == sum(r["credits"] for r in records)
