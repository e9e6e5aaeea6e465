"""POST /v1/messages through the official anthropic SDK and raw HTTP, against the fake upstream."""
from __future__ import annotations

import json
import threading
import time

import anthropic
import httpx
import pytest

from tests.fake_upstream import Scenario

HELLO = [{"role": "user", "content": "Hello"}]


def sdk(gw, key, *, base: str = "/api/v1") -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=gw.url + base, max_retries=0, timeout=20)


def post(gw, key, body, *, path="/v1/messages", headers=None, **kw) -> httpx.Response:
    h = {"x-api-key": key, "anthropic-version": "2023-06-01"} if key else {}
    h.update(headers or {})
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(gw.url + path, content=content, headers=h, timeout=20, **kw)


def test_sdk_non_streaming_returns_upstream_answer(gateway):
    """The SDK (base URL …/api/v1, so it calls /api/v1/v1/messages) gets the upstream's message."""
    _, key = gateway.user_with_key()
    msg = sdk(gateway, key).messages.create(model="claude-sonnet-4", max_tokens=100, messages=HELLO)
    assert msg.content[0].text == "Hello from the fake upstream."
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (25, 150)
    rec = gateway.fake.requests[-1]
    assert rec.path == "/v1/messages"
    assert rec.json["model"] == "claude-sonnet-4-20250514"
    assert rec.headers["x-api-key"] == gateway.fake.api_key
    assert key not in json.dumps(rec.headers)


def test_sdk_streaming_yields_text_and_final_usage(gateway):
    """A streamed call relays every event; the SDK assembles the text and the final usage."""
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(text="one two three four", chunks=4))
    with sdk(gateway, key).messages.stream(model="claude-sonnet-4", max_tokens=100, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "one two three four"
    assert final.usage.output_tokens == 150 and final.stop_reason == "end_turn"


def test_first_event_arrives_before_upstream_finishes(gateway):
    """Events are flushed one by one: the first reaches the client while the upstream still generates."""
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(chunks=4, delay=0.4))
    started = time.monotonic()
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={"x-api-key": key}, timeout=20,
                      json={"model": "claude-sonnet-4", "max_tokens": 50, "messages": HELLO, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-accel-buffering"] == "no"
        lines = r.iter_lines()
        first = next(lines)
        first_at = time.monotonic() - started
        rest = list(lines)
        total = time.monotonic() - started
    assert first == "event: message_start"
    assert first_at < 0.4 < total
    assert "event: message_stop" in rest


@pytest.mark.parametrize("path", ["/v1/messages", "/api/v1/messages", "/api/v1/v1/messages",
                                  "/v1/messages?beta=true"])
def test_messages_served_on_every_documented_path(gateway, path):
    """Every path a client calls reaches the upstream's /v1/messages, query string kept."""
    _, key = gateway.user_with_key()
    r = post(gateway, key, {"model": "claude-sonnet-4", "max_tokens": 10, "messages": HELLO}, path=path)
    assert r.status_code == 200, r.text
    rec = gateway.fake.requests[-1]
    assert rec.path == "/v1/messages"
    assert rec.query == ("beta=true" if "beta" in path else "")


def test_body_forwarded_byte_for_byte_except_model(gateway):
    """Thinking signatures, odd spacing, unicode and unknown fields reach the upstream untouched."""
    _, key = gateway.user_with_key()
    raw = ('{ "model" :"claude-opus-4.6","max_tokens":  1000,\n "messages": [{"role":"user","content":"Caf\\u00e9 ✓"},'
           '{"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"EqQBCkYI+/=sig\\/x"},'
           '{"type":"text","text":"ok"}]},{"role":"user","content":"more"}],'
           '"context_management":{"edits":[{"type":"clear_tool_uses_20250919"}]},'
           '"output_config":{"effort":"high"},"thinking":{"type":"adaptive"},"x_future":[1.50,2e3]}')
    r = post(gateway, key, raw.encode(), headers={"anthropic-beta": "context-management-2025-06-27"})
    assert r.status_code == 200, r.text
    sent = gateway.fake.requests[-1].raw_body
    assert sent == raw.replace('"claude-opus-4.6"', '"claude-opus-4-6"', 1).encode()
    assert b'"signature":"EqQBCkYI+/=sig\\/x"' in sent and b"[1.50,2e3]" in sent


def test_alias_normalised_and_max_tokens_clamped(gateway):
    """An alias becomes the upstream id; max_tokens above the model's output limit is clamped."""
    _, key = gateway.user_with_key()
    r = post(gateway, key, {"model": "claude-sonnet-4", "max_tokens": 64000, "messages": HELLO})
    assert r.status_code == 200, r.text
    body = gateway.fake.requests[-1].json
    assert body["model"] == "claude-sonnet-4-20250514" and body["max_tokens"] == 16000


def test_thinking_budget_lowered_below_clamped_max_tokens(gateway):
    """A thinking budget that would reach the clamped max_tokens is lowered below it."""
    _, key = gateway.user_with_key()
    r = post(gateway, key, {"model": "claude-sonnet-4-20250514", "max_tokens": 64000, "messages": HELLO,
                            "thinking": {"type": "enabled", "budget_tokens": 20000}})
    assert r.status_code == 200, r.text
    body = gateway.fake.requests[-1].json
    assert body["max_tokens"] == 16000 and body["thinking"] == {"type": "enabled", "budget_tokens": 15999}


def test_version_and_beta_headers_forwarded_unchanged(gateway):
    """anthropic-version and anthropic-beta pass through as sent; a missing version gets 2023-06-01."""
    _, key = gateway.user_with_key()
    beta = "claude-code-20250219,interleaved-thinking-2025-05-14,effort-2025-11-24"
    post(gateway, key, {"model": "claude-sonnet-4", "max_tokens": 5, "messages": HELLO},
         headers={"anthropic-version": "2026-10-21", "anthropic-beta": beta})
    headers = gateway.fake.requests[-1].headers
    assert headers["anthropic-version"] == "2026-10-21" and headers["anthropic-beta"] == beta
    httpx.post(gateway.url + "/v1/messages", headers={"Authorization": f"Bearer {key}"},
               json={"model": "claude-sonnet-4", "max_tokens": 5, "messages": HELLO})
    assert gateway.fake.requests[-1].headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_request_id_and_rate_limit_headers_passed_back(gateway, stream):
    """request-id and anthropic-ratelimit-* headers from the upstream reach the client."""
    _, key = gateway.user_with_key()
    r = post(gateway, key, {"model": "claude-sonnet-4", "max_tokens": 5, "messages": HELLO, "stream": stream})
    assert r.headers["request-id"].startswith("req_fake_")
    assert r.headers["anthropic-ratelimit-requests-remaining"] == "999"


def test_claude_code_request_shape_passes(gateway):
    """A Claude Code style call (HEAD / probe, ?beta=true, 64000 max_tokens, adaptive thinking) works."""
    _, key = gateway.user_with_key()
    assert httpx.head(gateway.url + "/").status_code == 200
    body = {"model": "claude-opus-4-6", "max_tokens": 64000, "stream": True, "messages": HELLO,
            "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"}],
            "thinking": {"type": "adaptive"}, "metadata": {"user_id": "user_abc_session_1"},
            "context_management": {"edits": []}, "output_config": {"effort": "high"}}
    r = post(gateway, key, body, path="/v1/messages?beta=true",
             headers={"anthropic-beta": "claude-code-20250219", "anthropic-dangerous-direct-browser-access": "true"})
    assert r.status_code == 200 and "event: message_stop" in r.text
    assert gateway.fake.requests[-1].json["max_tokens"] == 32000


def test_client_disconnect_cancels_upstream_and_bills_what_was_produced(gateway):
    """Hanging up mid-stream closes the upstream request at once and bills input + output streamed."""
    username, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(chunks=200, delay=0.05))
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={"x-api-key": key}, timeout=20,
                      json={"model": "claude-sonnet-4", "max_tokens": 1000, "messages": HELLO, "stream": True}) as r:
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("event: content_block_delta")
            if seen == 5:
                break
    rec = gateway.fake.requests[-1]
    assert gateway.run(_wait(rec.done), timeout=10)
    assert rec.disconnected and not rec.finished
    sent = rec.events_sent
    time.sleep(0.3)
    assert rec.events_sent == sent < 100  # generation stopped
    row = _wait_usage(gateway, username)
    assert row["status"] == 499 and row["input_tokens"] == 25
    assert 5 <= row["output_tokens"] < 150
    balance, held = gateway.micro_balance(username)
    assert held == 0 and balance == 100_000_000 - row["credits"]
    assert row["credits"] == (25 + row["output_tokens"]) * 130


async def _wait(event) -> bool:
    import asyncio
    await asyncio.wait_for(event.wait(), 8)
    return True


def _wait_usage(gw, username, count=1, timeout=5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = gw.usage(username)
        if len(rows) >= count:
            return rows[0]
        time.sleep(0.02)
    raise AssertionError("no usage record written")


def test_keepalive_pings_during_upstream_silence(gateway_factory):
    """When the upstream is silent longer than the keep-alive interval, ping events keep the stream open."""
    gw = gateway_factory(keepalive_interval=0.2)
    _, key = gw.user_with_key()
    gw.fake.enqueue(Scenario(chunks=2, delay=0.9))
    r = post(gw, key, {"model": "claude-sonnet-4", "max_tokens": 5, "messages": HELLO, "stream": True})
    assert r.text.count("event: ping") >= 3  # the fake sends one; the gateway adds the rest
    assert r.text.rstrip().endswith('data: {"type":"message_stop"}')


def test_concurrent_streams_are_independent(gateway):
    """Several streams at once each receive their own complete sequence."""
    _, key = gateway.user_with_key()
    results = []

    def one(i):
        r = post(gateway, key, {"model": "claude-sonnet-4", "max_tokens": 5, "stream": True,
                                "messages": [{"role": "user", "content": f"[[scenario: text=w{i} chunks=3 delay=0.05]]"}]})
        results.append((i, r.text))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(results) == 8
    for i, text in results:
        assert text.count(f"w{i}") == 3 and "message_stop" in text


def test_stream_bytes_identical_to_the_upstream_stream(gateway):
    """The relayed SSE bytes (thinking, signature_delta, tool_use input_json_delta) equal the upstream's own."""
    import re

    _, key = gateway.user_with_key()
    scenario = Scenario(thinking="Consider it.", text="Reading.", tool_calls=[{"name": "read", "input": {"p": "ä.py"}}],
                        usage={"input_tokens": 7, "output_tokens": 9, "cache_read_input_tokens": 3})
    body = {"model": "claude-sonnet-4-20250514", "max_tokens": 3000, "stream": True, "messages": HELLO,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": [{"name": "read", "input_schema": {"type": "object"}}]}
    gateway.fake.enqueue(scenario, scenario)
    via_gateway = post(gateway, key, body).content
    direct = httpx.post(gateway.fake.base_url + "/v1/messages", json=body, timeout=20,
                        headers={"x-api-key": gateway.fake.api_key, "anthropic-version": "2023-06-01"}).content

    def norm(raw: bytes) -> bytes:  # only the fake's per-request counters differ
        return re.sub(rb"(msg|toolu)_fake_\d+", rb"\1_fake_N", raw)

    # …and the gateway's cost comment before message_stop (tests/test_stream_costs.py).
    via_gateway = re.sub(rb": cheaplm-credits-used=[0-9.]+\n: cheaplm-credits-remaining=[0-9.]+\n\n", b"", via_gateway)

    assert norm(via_gateway) == norm(direct)
    assert b'"type":"signature_delta","signature":"EqQBCkYIARgCKkBfakeSignature=="' in via_gateway
    assert b"input_json_delta" in via_gateway
