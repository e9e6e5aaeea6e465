"""Every documented error: the right status, the documented JSON shape, no upstream call, nothing debited."""
from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from tests.fake_upstream import Scenario

HELLO = [{"role": "user", "content": "Hello"}]
OK_BODY = {"model": "claude-sonnet-4", "max_tokens": 100, "messages": HELLO}


def call(gw, key, body=OK_BODY, **headers) -> httpx.Response:
    h = {"x-api-key": key} if key else {}
    h.update(headers)
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(gw.url + "/v1/messages", content=content, headers=h, timeout=20)


def assert_error(r: httpx.Response, status: int, etype: str, contains: str = "") -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == etype
    assert contains in body["error"]["message"]
    return body


def test_missing_key_is_401_with_exactly_the_documented_json(gateway):
    """No key: 401 and the documented body, word for word."""
    r = call(gateway, None)
    assert r.status_code == 401
    assert r.json() == {"type": "error", "error": {
        "type": "authentication_error",
        "message": "Missing API key. Provide via x-api-key header or Authorization: Bearer."}}


@pytest.mark.parametrize("headers", [{"x-api-key": "sk-" + "x" * 64}, {"Authorization": "Bearer sk-nope"}],
                         ids=["x-api-key", "bearer"])
def test_unknown_key_is_401(gateway, headers):
    """An unknown key in either header is rejected with authentication_error."""
    r = httpx.post(gateway.url + "/v1/messages", json=OK_BODY, headers=headers)
    assert_error(r, 401, "authentication_error", "Invalid API key")
    assert gateway.fake.requests == []


def test_sdk_raises_authentication_error(gateway):
    """The anthropic SDK maps the 401 to AuthenticationError."""
    client = anthropic.Anthropic(api_key="sk-wrong", base_url=gateway.url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(**OK_BODY)


def test_frozen_key_is_403_at_once(gateway):
    """Freezing a key through the management API blocks it on the very next request."""
    username, key = gateway.user_with_key()
    assert call(gateway, key).status_code == 200
    key_id = gateway.user(username)["keys"][0]["id"]
    assert gateway.admin.patch(f"/admin/api/keys/{key_id}", json={"frozen": True}).status_code == 200
    assert_error(call(gateway, key), 403, "permission_error", "frozen")
    gateway.admin.patch(f"/admin/api/keys/{key_id}", json={"frozen": False})
    assert call(gateway, key).status_code == 200


def test_frozen_user_is_403(gateway):
    """A frozen account cannot spend, whatever key it uses."""
    username, key = gateway.user_with_key()
    gateway.admin.patch(f"/admin/api/users/{username}", json={"frozen": True})
    assert_error(call(gateway, key), 403, "permission_error", "frozen")


def test_zero_balance_is_403_with_the_documented_message(gateway):
    """Balance ≤ 0: 403 permission_error, 'Insufficient balance. Please top up your account.'"""
    _, key = gateway.user_with_key(credits=0)
    r = call(gateway, key)
    assert r.json() == {"type": "error", "error": {"type": "permission_error",
                                                   "message": "Insufficient balance. Please top up your account."}}
    assert r.status_code == 403 and gateway.fake.requests == []


def test_balance_below_hold_is_402_explaining_hold_and_max_tokens(gateway):
    """A positive balance below the hold: 402 insufficient_credits naming hold, balance and max_tokens."""
    username, key = gateway.user_with_key(credits=0.5)
    r = call(gateway, key, {**OK_BODY, "max_tokens": 16000})
    body = assert_error(r, 402, "insufficient_credits", "max_tokens")
    assert "0.5 credits" in body["error"]["message"] and "hold of" in body["error"]["message"]
    assert gateway.micro_balance(username) == (500_000, 0)
    assert call(gateway, key, {**OK_BODY, "max_tokens": 100}).status_code == 200


@pytest.mark.parametrize("body,param", [
    (b"{not json", None),
    (b"", None),
    (b"[1,2]", None),
    ({"max_tokens": 10, "messages": HELLO}, "model"),
    ({"model": "claude-sonnet-4", "messages": HELLO}, "max_tokens"),
    ({"model": "claude-sonnet-4", "max_tokens": 10}, "messages"),
    ({"model": "claude-sonnet-4", "max_tokens": "10", "messages": HELLO}, "max_tokens"),
    ({"model": "claude-sonnet-4", "max_tokens": True, "messages": HELLO}, "max_tokens"),
    ({"model": "claude-sonnet-4", "max_tokens": 0, "messages": HELLO}, "max_tokens"),
    ({"model": "claude-sonnet-4", "max_tokens": 10, "messages": "hi"}, "messages"),
    ({"model": "claude-sonnet-4", "max_tokens": 10, "messages": []}, "messages"),
    ({"model": "claude-sonnet-4", "max_tokens": 10, "messages": [{"role": "bot", "content": "x"}]}, "messages.0"),
    ({"model": 7, "max_tokens": 10, "messages": HELLO}, "model"),
    ({"model": "claude-sonnet-4", "max_tokens": 10, "messages": HELLO, "stream": "yes"}, "stream"),
], ids=["malformed", "empty", "array", "no-model", "no-max_tokens", "no-messages", "max_tokens-str",
        "max_tokens-bool", "max_tokens-0", "messages-str", "messages-empty", "bad-role", "model-int", "stream-str"])
def test_bad_input_is_400_without_upstream_call_or_debit(gateway, body, param):
    """Malformed or mistyped bodies get a clear 400; the upstream is not called and nothing is held."""
    username, key = gateway.user_with_key()
    r = call(gateway, key, body)
    assert_error(r, 400, "invalid_request_error")
    if param:
        assert param.split(".")[0] in r.json()["error"]["message"]
    assert gateway.fake.requests == []
    assert gateway.micro_balance(username) == (100_000_000, 0)


def test_unknown_model_is_400_naming_valid_models(gateway):
    """An unknown model name is rejected, and the message lists the models that exist."""
    _, key = gateway.user_with_key()
    body = assert_error(call(gateway, key, {**OK_BODY, "model": "claude-opus-9-9"}), 400, "invalid_request_error")
    assert "claude-opus-9-9" in body["error"]["message"] and "claude-sonnet-4-20250514" in body["error"]["message"]


def test_body_over_the_limit_is_413(gateway_factory):
    """A body above MAX_BODY_MB gets 413 request_too_large, not a dropped connection."""
    gw = gateway_factory(max_body_mb=0.01)
    username, key = gw.user_with_key()
    big = {**OK_BODY, "messages": [{"role": "user", "content": "x" * 20_000}]}
    assert_error(call(gw, key, big), 413, "request_too_large", "limit")
    assert gw.fake.requests == []


@pytest.mark.parametrize("status,expect_status,etype", [
    (400, 400, "invalid_request_error"),
    (404, 404, "not_found_error"),
    (429, 429, "rate_limit_error"),
    (529, 529, "overloaded_error"),
    (500, 502, "api_error"),
    (401, 502, "api_error"),
], ids=["400", "404", "429", "529", "500", "upstream-401"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_errors_mapped_and_not_billed(gateway, status, expect_status, etype, stream):
    """Upstream 4xx pass through, 529 stays overloaded, 5xx (and bad gateway credentials) become 502."""
    username, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(status=status))
    r = call(gateway, key, {**OK_BODY, "stream": stream})
    body = assert_error(r, expect_status, etype)
    if expect_status == 502:
        assert "upstream failed" in body["error"]["message"].lower()
    if status == 429:
        assert "retry-after" in r.headers
    assert gateway.micro_balance(username) == (100_000_000, 0)
    row = gateway.usage(username)[0]
    assert row["status"] == expect_status and row["credits"] == 0


def test_unreachable_upstream_is_502(gateway):
    """A connection failure to the upstream is a 502 api_error saying the upstream failed."""
    username, key = gateway.user_with_key()
    gateway.run(gateway.fake.stop())
    body = assert_error(call(gateway, key), 502, "api_error", "upstream failed")
    assert "127.0.0.1" not in body["error"]["message"]
    assert gateway.micro_balance(username) == (100_000_000, 0)


def test_silent_upstream_is_detected(gateway_factory):
    """A non-streamed call is abandoned with a 502 after UPSTREAM_TIMEOUT (the answer comes in
    one piece, so silence before it is normal until then), and nothing is debited."""
    gw = gateway_factory(upstream_timeout=0.5, upstream_idle_timeout=60)
    username, key = gw.user_with_key()
    gw.fake.enqueue(Scenario(hang=True))
    assert_error(call(gw, key), 502, "api_error", "did not answer in time")
    assert gw.micro_balance(username) == (100_000_000, 0)


def test_silent_stream_is_detected(gateway_factory):
    """A stream whose upstream sends no response for UPSTREAM_IDLE_TIMEOUT gets a 502, unbilled."""
    gw = gateway_factory(upstream_idle_timeout=0.5, upstream_timeout=60)
    username, key = gw.user_with_key()
    gw.fake.enqueue(Scenario(hang=True))
    assert_error(call(gw, key, {**OK_BODY, "stream": True}), 502, "api_error", "did not answer in time")
    assert gw.micro_balance(username) == (100_000_000, 0)


def test_error_mid_stream_becomes_sse_error_event(gateway):
    """After the 200 went out, an upstream error arrives as an SSE error event and the SDK raises."""
    username, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(chunks=6, error_after=2))
    client = anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(**OK_BODY) as stream:
            for _ in stream.text_stream:
                pass
    assert "Overloaded" in str(info.value)
    row = gateway.usage(username)[0]
    assert row["status"] == 502 and row["input_tokens"] == 25


def test_unexpected_failure_is_500_with_request_id_and_no_traceback(gateway):
    """A failure the gateway cannot explain (here a damaged user document whose balance is
    not a number) answers 500 api_error with a request id and no stack trace, and nothing
    is sent upstream."""
    username, key = gateway.user_with_key()
    gateway.run(gateway.services.db.users.update_one({"username": username},
                                                     {"$set": {"balance": "secret internals"}}))
    r = call(gateway, key)
    body = assert_error(r, 500, "api_error", "request id req_")
    assert "secret internals" not in r.text and "Traceback" not in r.text
    assert r.headers["request-id"] in body["error"]["message"]
    assert gateway.fake.requests == []


def test_unknown_api_path_is_json_404(gateway):
    """Unknown API paths answer in the documented error shape."""
    assert_error(httpx.get(gateway.url + "/v1/nothing"), 404, "not_found_error")


def test_rate_limit_is_429_with_retry_after(gateway):
    """A key past its requests-per-minute limit gets 429 rate_limit_error with retry-after; the SDK raises."""
    username = gateway.create_user()
    key = gateway.create_key(username, rpm=2)
    assert call(gateway, key).status_code == 200
    assert call(gateway, key).status_code == 200
    r = call(gateway, key)
    assert_error(r, 429, "rate_limit_error", "2 requests per minute")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    client = anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(**OK_BODY)
    assert len(gateway.fake.requests) == 2


def test_default_rate_limit_applies_to_every_key(gateway_factory):
    """RATE_LIMIT_RPM limits keys that set no limit of their own."""
    gw = gateway_factory(rate_limit_rpm=1)
    _, key = gw.user_with_key()
    assert call(gw, key).status_code == 200
    assert call(gw, key).status_code == 429


def test_rate_limit_counts_are_shared_between_processes(gateway):
    """Two gateway processes (two services on one database) share one per-key count: far
    below the limit each counts locally and syncs; near it, every request is counted in
    MongoDB, so together they let through no more than the limit plus the documented slack."""
    from services.core.clock import FixedClock
    from services.core.errors import RateLimited
    from services.core.types import Principal
    from services.gateway.ratelimit import RateLimitService

    clock = FixedClock(1_800_000_030.0)  # mid-minute: the windows are calendar minutes
    db = gateway.services.db
    first, second = (RateLimitService(db, sync_seconds=3600, clock=clock),
                     RateLimitService(db, sync_seconds=3600, clock=clock))
    principal = Principal(user_id=None, key_id="shared-key", key_name="k", username="u", rpm=100)

    async def scenario():
        admitted = {"first": 0, "second": 0}
        for _ in range(4):  # 4 each, below both thresholds: counted locally, nothing written
            for name, service in (("first", first), ("second", second)):
                await service.check(principal)
                admitted[name] += 1
        before = await db.rate_limits.count_documents({})
        await first.sync()
        await second.sync()
        refused = 0
        for _ in range(100):
            for name, service in (("first", first), ("second", second)):
                try:
                    await service.check(principal)
                    admitted[name] += 1
                except RateLimited:
                    refused += 1
        await first.sync()
        await second.sync()
        doc = await db.rate_limits.find_one({"_id": {"$regex": "^shared-key:"}})
        return before, admitted, refused, doc["n"]

    before, admitted, refused, shared = gateway.run(scenario())
    assert before == 0, "below the thresholds nothing is written per request"
    total = admitted["first"] + admitted["second"]
    assert 100 <= total <= 105, admitted  # the limit, plus at most 5% (one other process)
    assert refused == 200 - (total - 8)
    assert shared >= total


def test_rate_limit_window_is_a_calendar_minute(gateway):
    """A key refused in one minute is let through again when the next minute starts."""
    from services.core.clock import FixedClock
    from services.core.errors import RateLimited
    from services.core.types import Principal
    from services.gateway.ratelimit import RateLimitService

    clock = FixedClock(1_800_000_058.0)
    service = RateLimitService(gateway.services.db, clock=clock)
    principal = Principal(user_id=None, key_id="minute-key", key_name="k", username="u", rpm=1)

    async def scenario():
        await service.check(principal)
        with pytest.raises(RateLimited) as refused:
            await service.check(principal)
        clock.advance(2.0)
        await service.check(principal)
        return refused.value.headers["retry-after"]

    assert gateway.run(scenario()) == "2"
