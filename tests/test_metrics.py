"""What an operator watches: /metrics after real calls, and the JSON access-log line."""
from __future__ import annotations

import json
import logging
import re

import httpx

METRICS_TOKEN = "metrics-token-0123456789"
HEADERS = {"anthropic-version": "2023-06-01"}


def body(stream: bool) -> dict:
    return {"model": "claude-sonnet-4-6", "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": "hello"}]}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of `name` with at least these labels (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, value = line.rsplit(" ", 1)
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if head.split("{")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


def test_metrics_show_real_numbers_after_calls(gateway_factory):
    gw = gateway_factory(metrics_token=METRICS_TOKEN)
    username, key = gw.user_with_key()
    for stream in (False, True, False):
        r = httpx.post(gw.url + "/v1/messages", json=body(stream), headers={**HEADERS, "x-api-key": key},
                       timeout=30)
        assert r.status_code == 200, r.text
    assert httpx.get(gw.url + "/metrics").status_code == 401
    assert httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    r = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    model = "claude-sonnet-4-6"
    assert sample(text, "cheaplm_requests_total", route="MessagesApiHandler", status="200", model=model) == 3
    assert sample(text, "cheaplm_upstream_latency_seconds_count", model=model) == 3
    assert sample(text, "cheaplm_time_to_first_token_seconds_count", model=model) >= 1
    records = gw.usage(username)
    assert sample(text, "cheaplm_tokens_total", model=model, kind="output_tokens") == sum(
        r["output_tokens"] for r in records)
    assert sample(text, "cheaplm_credits_micro_total", model=model) == sum(r["credits"] for r in records) > 0
    assert sample(text, "cheaplm_open_streams") == 0 and sample(text, "cheaplm_holds_outstanding") == 0
    assert "cheaplm_pending_settlements 0.0" in text and "cheaplm_database_errors_total 0.0" in text


def test_rate_limit_refusals_are_counted(gateway_factory):
    gw = gateway_factory(metrics_token=METRICS_TOKEN)
    username = gw.create_user(100)
    key = gw.create_key(username, rpm=1)
    statuses = [httpx.post(gw.url + "/v1/messages", json=body(False), headers={**HEADERS, "x-api-key": key},
                           timeout=30).status_code for _ in range(3)]
    assert statuses == [200, 429, 429]
    text = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert sample(text, "cheaplm_rate_limit_refusals_total") == 2


def test_metrics_are_not_public_by_default(gateway):
    assert httpx.get(gateway.url + "/metrics").status_code == 404


def test_access_log_is_one_json_line_without_secrets(gateway, caplog):
    username, key = gateway.user_with_key()
    caplog.set_level(logging.INFO, logger="tornado.access")
    r = httpx.post(gateway.url + "/v1/messages?api_key=" + key, json={**body(False), "messages": [
        {"role": "user", "content": "my secret prompt text"}]}, headers={**HEADERS, "x-api-key": key}, timeout=30)
    assert r.status_code == 200
    gateway.run(_settle_logs())
    # The gateway's lines (the fake upstream, a Tornado app in this process, logs its own).
    lines = [rec.getMessage() for rec in caplog.records
             if rec.name == "tornado.access" and rec.getMessage().startswith("{")]
    line = next(x for x in map(json.loads, lines) if x["route"] == "MessagesApiHandler")
    assert line["request_id"].startswith("req_")
    user = gateway.user(username)
    assert line["status"] == 200 and line["model"] == "claude-sonnet-4-6" and line["user_id"] == user["id"]
    assert line["tokens"] > 0 and line["credits"] > 0 and line["latency_ms"] > 0 and line["upstream"] == "127.0.0.1"
    head, tail = line["key_prefix"].split("…")
    assert key.startswith(head) and key.endswith(tail) and len(head + tail) < 16
    assert "api_key=[redacted]" in line["path"]
    everything = "\n".join(lines)
    for secret in (key, "my secret prompt", gateway.fake.api_key, "password-123"):
        assert secret not in everything


async def _settle_logs() -> None:
    """Let the gateway's loop run the log function of the request that just finished."""
