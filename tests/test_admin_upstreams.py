"""The upstream pool: records edited through the API and pages (keys encrypted, never shown
again), routing by priority and weight, failover before the first byte, circuit breakers."""
from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from services.gateway.pool import CLOSED, HALF_OPEN, OPEN, Breaker, UpstreamPool, weighted_order
from tests.fake_upstream import FakeUpstream, Scenario
from tests.test_admin_console import ADMIN, ADMIN_PASSWORD, admin_site

BODY = {"model": "claude-sonnet-4", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gw(gateway_factory):
    gw = gateway_factory(admin_username=ADMIN, admin_password=ADMIN_PASSWORD)
    yield gw
    for fake in getattr(gw, "_extra_fakes", []):
        gw.run(fake.stop())


def second_upstream(gw, *, priority: int = 1, name: str = "second", **extra) -> tuple[FakeUpstream, dict]:
    """A second fake upstream on the gateway's loop, added to the pool through the API."""
    fake = FakeUpstream(api_key="second-upstream-key")
    url = gw.run(fake.start())
    gw._extra_fakes = [*getattr(gw, "_extra_fakes", []), fake]
    r = gw.admin.post("/admin/api/upstreams", json={"name": name, "base_url": url, "api_key": "second-upstream-key",
                                                    "priority": priority, **extra})
    assert r.status_code == 201, r.text
    return fake, r.json()


def call(gw, key: str, *, stream: bool = False, **headers) -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key, **headers}, json={**BODY, "stream": stream},
                      timeout=30)


async def _dropping_server() -> tuple[asyncio.AbstractServer, str]:
    """A server that accepts each connection and closes it at once, answering nothing."""
    async def drop(reader, writer):
        writer.close()
    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_upstream_records_keys_encrypted_and_never_shown(gw):
    fake, created = second_upstream(gw)
    assert created["api_key_hint"] == "…-key" and "second-upstream-key" not in str(created)
    docs = gw.run(gw.services.db.upstreams.find({}).to_list(None))
    assert "second-upstream-key" not in str(docs) and gw.fake.api_key not in str(docs)
    assert all(d.get("api_key_enc") for d in docs) and not any("api_key" in d for d in docs)
    listed = gw.admin.get("/admin/api/upstreams").json()["data"]
    assert [u["name"] for u in listed] == ["default", "second"] and "second-upstream-key" not in str(listed)
    page = admin_site(gw).get("/admin/upstreams").text
    assert "second-upstream-key" not in page and "…-key" in page
    assert httpx.get(gw.url + "/admin/api/upstreams").status_code == 401


@pytest.mark.parametrize("body,param", [
    ({"base_url": "http://x", "api_key": "k"}, "name"),
    ({"name": "x", "base_url": "ftp://x", "api_key": "k"}, "base_url"),
    ({"name": "x", "base_url": "http://x"}, "api_key"),
    ({"name": "x", "base_url": "http://x", "api_key": "k", "priority": -1}, "priority"),
    ({"name": "x", "base_url": "http://x", "api_key": "k", "weight": "heavy"}, "weight"),
    ({"name": "x", "base_url": "http://x", "api_key": "k", "models": "all"}, "models"),
    ({"name": "x", "base_url": "http://x", "api_key": "k", "enabled": 1}, "enabled"),
    ({"name": "x", "base_url": "http://x", "api_key": "k", "beta_allowlist": "a"}, "beta_allowlist"),
    ({"name": "x", "base_url": "http://x", "api_key": "k", "secret": 1}, "secret"),
    ({"name": "default", "base_url": "http://x", "api_key": "k"}, "name"),
])
def test_bad_upstream_input_names_the_field(gw, body, param):
    r = gw.admin.post("/admin/api/upstreams", json=body)
    assert r.status_code in (400, 409) and r.json()["error"]["param"] == param, r.text


@pytest.mark.parametrize("failure", [529, 503, 429, "drop", "refused"])
def test_failover_to_the_next_upstream_before_the_first_byte(gw, failure):
    """The first upstream fails before answering; the second serves, and the usage record
    names it."""
    fake2, _ = second_upstream(gw)
    username, key = gw.user_with_key()
    if isinstance(failure, int):
        gw.fake.enqueue(Scenario(status=failure))
    elif failure == "drop":
        server, url = gw.run(_dropping_server())
        assert gw.admin.patch("/admin/api/upstreams/default", json={"base_url": url}).status_code == 200
    else:
        port_server, url = gw.run(_dropping_server())
        gw.run(_close(port_server))  # nothing listens there now: connection refused
        assert gw.admin.patch("/admin/api/upstreams/default", json={"base_url": url}).status_code == 200
    r = call(gw, key)
    assert r.status_code == 200, r.text
    assert len(fake2.requests) == 1 and fake2.requests[0].headers["x-api-key"] == "second-upstream-key"
    row = gw.usage(username)[0]
    assert row["upstream"] == "second" and row["status"] == 200
    health = {u["name"]: u["health"] for u in gw.admin.get("/admin/api/upstreams").json()["data"]}
    assert health["default"]["failures"] == 1 and health["second"]["failures"] == 0


async def _close(server) -> None:
    server.close()
    await server.wait_closed()


def test_streams_fail_over_too_but_never_after_streaming_began(gw):
    fake2, _ = second_upstream(gw)
    username, key = gw.user_with_key()
    gw.fake.enqueue(Scenario(status=529))
    r = call(gw, key, stream=True)
    assert r.status_code == 200 and "message_stop" in r.text and len(fake2.requests) == 1
    assert gw.usage(username)[0]["upstream"] == "second"
    gw.fake.enqueue(Scenario(error_after=2, chunks=5))
    r = call(gw, key, stream=True)
    assert r.status_code == 200 and "event: error" in r.text  # reported in-band
    assert len(fake2.requests) == 1  # not retried
    row = gw.usage(username)[0]
    assert row["upstream"] == "default" and row["status"] != 200


def test_every_upstream_failing_returns_the_last_answer(gw):
    fake2, _ = second_upstream(gw)
    _, key = gw.user_with_key()
    gw.fake.enqueue(Scenario(status=503))
    fake2.enqueue(Scenario(status=529))
    r = call(gw, key)
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"


def test_priority_disable_and_model_lists_route_calls(gw):
    fake2, second = second_upstream(gw)
    username, key = gw.user_with_key()
    call(gw, key)
    assert len(gw.fake.requests) == 1 and not fake2.requests  # priority 0 first
    assert gw.admin.patch("/admin/api/upstreams/default", json={"enabled": False}).status_code == 200
    call(gw, key)
    assert len(gw.fake.requests) == 1 and len(fake2.requests) == 1
    assert gw.usage(username)[0]["upstream"] == "second"
    assert gw.admin.patch("/admin/api/upstreams/default", json={"enabled": True}).status_code == 200
    r = gw.admin.patch("/admin/api/upstreams/default", json={"models": ["claude-opus-4-8"]})
    assert r.status_code == 200
    call(gw, key)  # claude-sonnet-4 is not among default's models now
    assert len(fake2.requests) == 2
    assert gw.admin.delete(f"/admin/api/upstreams/{second['id']}").status_code == 200
    r = call(gw, key)
    assert r.status_code == 502 and "serves the model" in r.json()["error"]["message"]


def test_beta_header_forwarded_unchanged_unless_an_allowlist_is_set(gw):
    _, key = gw.user_with_key()
    call(gw, key, **{"anthropic-beta": "a-2025,b-2025"})
    assert gw.fake.requests[-1].headers["anthropic-beta"] == "a-2025,b-2025"
    assert gw.admin.patch("/admin/api/upstreams/default", json={"beta_allowlist": ["b-2025"]}).status_code == 200
    call(gw, key, **{"anthropic-beta": "a-2025,b-2025"})
    assert gw.fake.requests[-1].headers["anthropic-beta"] == "b-2025"


def test_the_test_call_is_one_token_and_reports_failure(gw):
    r = gw.admin.post("/admin/api/upstreams/default/test")
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["status"] == 200
    assert gw.fake.requests[-1].json["max_tokens"] == 1
    assert gw.admin.patch("/admin/api/upstreams/default", json={"api_key": "wrong-key-123"}).status_code == 200
    r = gw.admin.post("/admin/api/upstreams/default/test").json()
    assert r["ok"] is False and r["status"] == 401
    assert gw.admin.post("/admin/api/upstreams/nope/test").status_code == 404
    audit = gw.admin.get("/admin/api/audit", params={"action": "upstream."}).json()["data"]
    assert [a["action"] for a in audit] == ["upstream.test", "upstream.update", "upstream.test"]
    assert audit[1]["after"] == {"api_key_hint": "replaced"} and "wrong-key" not in str(audit)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_half_opens_and_closes():
    clock = FakeClock()
    b = Breaker(failures=3, window=10, cooldown=30, clock=clock)
    b.failure(); b.failure()
    clock.now += 11  # the first two fell out of the window
    b.failure(); b.failure()
    assert b.status() == CLOSED and b.available()
    b.failure()
    assert b.status() == OPEN and not b.available()
    clock.now += 29
    assert b.status() == OPEN
    clock.now += 1
    assert b.status() == HALF_OPEN and b.available()
    b.begin()
    assert not b.available()  # one trial at a time
    b.failure()
    assert b.status() == OPEN  # the trial failed: cool down again
    clock.now += 30
    b.begin()
    b.success()
    assert b.status() == CLOSED and b.available()


def test_breaker_skips_a_failing_upstream_through_the_gateway(gateway_factory):
    gw = gateway_factory(admin_username=ADMIN, admin_password=ADMIN_PASSWORD, upstream_breaker_failures=2,
                         upstream_breaker_cooldown=3600)
    fake2, _ = second_upstream(gw)
    _, key = gw.user_with_key()
    gw.fake.enqueue(Scenario(status=503), Scenario(status=503))
    for _ in range(2):
        assert call(gw, key).status_code == 200
    assert len(gw.fake.requests) == 2
    call(gw, key)
    assert len(gw.fake.requests) == 2 and len(fake2.requests) == 3  # the open breaker skips default
    health = {u["name"]: u["health"] for u in gw.admin.get("/admin/api/upstreams").json()["data"]}
    assert health["default"]["state"] == "open" and "breaker open" in health["default"]["skipped_because"]
    page = admin_site(gw).get("/admin/upstreams").text
    assert "circuit breaker open" in page and "HTTP 503" in page


def test_pool_orders_by_priority_then_weight():
    class U:
        def __init__(self, id, priority, weight):
            self.id, self.priority, self.weight, self.enabled, self.models = id, priority, weight, True, ()
    pool = UpstreamPool(rng=random.Random(7))
    pool.replace([U("heavy", 1, 3), U("light", 1, 1), U("backup", 2, 100), U("first", 0, 1)])
    firsts = {"heavy": 0, "light": 0}
    for _ in range(2000):
        order = [u.id for u in pool.order()]
        assert order[0] == "first" and order[-1] == "backup"
        firsts[order[1]] += 1
    assert 1300 < firsts["heavy"] < 1700  # 3:1 → 75 % first
    assert [u for u in weighted_order(["a", "b"], lambda x: 0 if x == "a" else 1, random.Random(1))] == ["b", "a"]


def test_upstream_pages_add_edit_disable_and_test(gw):
    site = admin_site(gw)
    fake = FakeUpstream(api_key="page-key-0001")
    url = gw.run(fake.start())
    form = {"name": "paged", "base_url": url, "api_key": "page-key-0001", "priority": "x", "weight": "1",
            "enabled": "on", "beta_policy": "forward"}
    r = site.post("/admin/upstreams", form)
    assert r.status_code == 400 and 'id="f-priority-error"' in r.text
    assert site.post("/admin/upstreams", {**form, "priority": "0"}).status_code == 302
    upstream_id = [u for u in gw.admin.get("/admin/api/upstreams").json()["data"] if u["name"] == "paged"][0]["id"]
    r = site.post(f"/admin/upstreams/{upstream_id}", {"action": "test"})
    assert r.status_code == 200 and "OK, HTTP 200" in r.text
    default_url = gw.admin.get("/admin/api/upstreams/default").json()["base_url"]
    r = site.post("/admin/upstreams/default", {"name": "default", "base_url": default_url, "priority": "0",
                                               "weight": "1", "beta_policy": "forward"})  # "enabled" unticked
    assert r.status_code == 302
    assert gw.admin.get("/admin/api/upstreams/default").json()["enabled"] is False
    _, key = gw.user_with_key()
    call(gw, key)
    assert len(fake.requests) == 2  # the test call and this one
    gw.run(fake.stop())


def test_an_upstream_can_know_a_model_by_its_own_id(gw):
    fake2, second = second_upstream(gw, priority=0, models=["claude-sonnet-4-20250514=their-sonnet"])
    gw.admin.patch("/admin/api/upstreams/default", json={"priority": 5})
    username, key = gw.user_with_key()
    assert call(gw, key).status_code == 200
    assert fake2.requests[-1].json["model"] == "their-sonnet"
    assert gw.usage(username)[0]["model"] == "claude-sonnet-4-20250514"
    r = gw.admin.post(f"/admin/api/upstreams/{second['id']}/test").json()
    assert r["ok"] and r["model"] == "their-sonnet"
