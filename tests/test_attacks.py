"""Attacks from the hostile review, tried through HTTP against the live gateway: each answers a
clear error in the documented shape, never a 500, and moves no money it should not."""
from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.errors import GatewayError, InvalidRequest
from services.core.money import to_micro
from services.protocols.anthropic import prepare_count_tokens, prepare_messages
from services.protocols.openai_chat.cursor import responses_to_chat
from services.protocols.openai_chat.request import chat_model, prepare_chat
from tests.fake_upstream import Scenario
from tests.test_pages import PASSWORD, Site, inline_error, signed_in

ROOT = Path(__file__).resolve().parent.parent
WRONG = "wrong-pass-1"


def site_at(gw, address: str) -> Site:
    """A browser whose connections come from `address` (any 127.x.y.z reaches the gateway)."""
    site = Site(gw)
    site.http = httpx.Client(base_url=gw.url, headers={"Accept": "text/html"}, follow_redirects=False, timeout=30,
                             transport=httpx.HTTPTransport(local_address=address))
    return site


def admin_error(r: httpx.Response, status: int, param: str) -> str:
    """Assert the management API's documented error shape; return the message."""
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert r.json()["type"] == "error" and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"]
    return error["message"]


def ledger_rows(gw, username: str) -> list[dict]:
    return gw.run(gw.services.db.ledger.find(
        {"user_id": gw.run(gw.services.users.by_username(username))["_id"]}).to_list(None))


# ---------------------------------------------------------------- 2: parallel guesses

def test_parallel_guesses_are_checked_at_most_up_to_the_limit(gateway):
    """100 simultaneous log-ins for one account from one address (99 wrong passwords and the
    right one): at most LOGIN_MAX_PER_ACCOUNT_ADDRESS of them reach the password check; the
    others get 429 with Retry-After; none is a 500."""
    username = gateway.create_user(0)
    site = Site(gateway)
    xsrf = site.xsrf()
    passwords = [WRONG] * 49 + [PASSWORD] + [WRONG] * 50

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, cookies={"_xsrf": xsrf}, timeout=60,
                                     limits=httpx.Limits(max_connections=100)) as client:
            return await asyncio.gather(*(client.post("/login", data={"_xsrf": xsrf, "username": username,
                                                                      "password": p}) for p in passwords))
    responses = asyncio.run(storm())
    statuses = [r.status_code for r in responses]
    checked = statuses.count(400) + statuses.count(302)
    assert set(statuses) <= {302, 400, 429}
    assert checked <= gateway.services.settings.login_max_per_account_address == 5, statuses
    assert all(int(r.headers["Retry-After"]) > 0 and "Too many failed log-ins" in r.text
               for r in responses if r.status_code == 429)


def test_parallel_guesses_at_the_current_password_are_checked_at_most_up_to_the_limit(gateway):
    """The password-change form reserves its attempt before checking the current password too."""
    site = signed_in(gateway)
    xsrf = site.xsrf()
    form = {"_xsrf": xsrf, "action": "password", "new_password": "good-pass-12", "confirm": "good-pass-12"}

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, cookies=dict(site.http.cookies), timeout=60,
                                     limits=httpx.Limits(max_connections=50)) as client:
            return await asyncio.gather(*(client.post("/account", data={**form, "current_password": f"guess-{i}-x1"})
                                          for i in range(50)))
    statuses = [r.status_code for r in asyncio.run(storm())]
    assert set(statuses) <= {400, 429} and statuses.count(400) <= 5, statuses
    # The password did not change (checked from another address: this one is locked for the account).
    assert site_at(gateway, "127.0.0.4").login(site.username).status_code == 302


# ---------------------------------------------------------------- 3: lock-out

def test_guesses_from_one_address_do_not_lock_the_owner_out(gateway):
    """After ten wrong guesses from one address (the first five checked, then 429 there), the
    right password from another address still logs in."""
    username = gateway.create_user(0)
    attacker = site_at(gateway, "127.0.0.2")
    statuses = [attacker.login(username, WRONG).status_code for _ in range(10)]
    assert statuses == [400] * 5 + [429] * 5
    assert attacker.login(username).status_code == 429  # that address stays locked for the account
    owner = site_at(gateway, "127.0.0.3")
    r = owner.login(username)
    assert r.status_code == 302 and owner.get("/dashboard").status_code == 200


# ---------------------------------------------------------------- 4: X-Forwarded-For

def test_spoofed_forwarded_for_does_not_multiply_signups(gateway_factory):
    """From a peer that is not a trusted proxy, a different X-Forwarded-For on every sign-up
    changes nothing: the fourth sign-up from the address gets 429, and only three users got
    SIGNUP_CREDITS."""
    gw = gateway_factory(signup_max_per_ip=3, signup_credits=1)
    statuses = []
    for i in range(5):
        site = Site(gw)
        site.http.headers.update({"X-Forwarded-For": f"198.51.100.{i}", "X-Real-Ip": f"198.51.100.{i}"})
        statuses.append(site.signup(f"spoof{i}").status_code)
    assert statuses == [302, 302, 302, 429, 429]
    granted = gw.run(gw.services.db.ledger.count_documents({"kind": "signup"}))
    assert gw.run(gw.services.db.users.count_documents({})) == 3 and granted == 3


def test_parallel_signups_cannot_outrun_the_address_limit(gateway_factory):
    """Twelve simultaneous sign-ups from one address with SIGNUP_MAX_PER_IP=3: three accounts
    are made (and granted SIGNUP_CREDITS), the rest get 429."""
    gw = gateway_factory(signup_max_per_ip=3, signup_credits=1)
    xsrf = Site(gw).xsrf()

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gw.url, cookies={"_xsrf": xsrf}, timeout=60) as client:
            return await asyncio.gather(*(client.post("/signup", data={
                "_xsrf": xsrf, "username": f"rush{i}", "email": f"rush{i}@example.com", "password": PASSWORD,
                "confirm": PASSWORD}) for i in range(12)))
    statuses = sorted(r.status_code for r in asyncio.run(storm()))
    assert statuses == [302] * 3 + [429] * 9
    assert gw.run(gw.services.db.users.count_documents({})) == 3
    assert gw.run(gw.services.db.ledger.count_documents({"kind": "signup"})) == 3


def test_forwarded_for_is_believed_only_from_trusted_proxies(gateway_factory):
    """Behind a trusted proxy the client is the nearest untrusted X-Forwarded-For hop: two
    clients count apart, and a hop the client itself wrote in front is ignored."""
    gw = gateway_factory(signup_max_per_ip=2, trusted_proxies="127.0.0.1/32, 10.0.0.0/8")

    def signup(name: str, forwarded: str) -> int:
        site = Site(gw)
        site.http.headers["X-Forwarded-For"] = forwarded
        return site.signup(name).status_code
    # The client 203.0.113.7 writes a fresh fake address in front each time; our proxies
    # (10.0.0.5, then the peer itself) append what they saw.
    assert [signup(f"prox{i}", f"192.0.2.{i}, 203.0.113.7, 10.0.0.5") for i in range(3)] == [302, 302, 429]
    assert signup("other", "203.0.113.8") == 302


# ---------------------------------------------------------------- 9: numeric edges

def test_huge_credit_cap_on_the_keys_form_is_a_clear_400(gateway):
    """credit_cap=1e27 on the keys page is refused inline with the documented maximum; no key is made."""
    site = signed_in(gateway)
    r = site.post("/keys", {"name": "big", "credit_cap": "1e27"})
    assert r.status_code == 400 and "1,000,000,000" in inline_error(r.text, "credit_cap")
    assert gateway.run(gateway.services.db.api_keys.count_documents({})) == 0


def test_huge_admin_credit_amount_is_refused_and_nothing_moves(gateway):
    """amount 10,000,000,000,000 is a 400 naming `amount`; the balance and ledger stay as they
    were and the user's API calls keep working."""
    username, key = gateway.user_with_key(5)
    before, ledger_before = gateway.micro_balance(username), len(ledger_rows(gateway, username))
    for amount in (10_000_000_000_000, -10_000_000_000_000, 1e27, "1e999999999", "NaN", True, [5], {"x": 1}):
        r = gateway.admin.post(f"/admin/api/users/{username}/credits", json={"amount": amount, "reason": "x"})
        assert "1,000,000,000" in admin_error(r, 400, "amount") or amount in ("NaN", True, [5], {"x": 1})
    assert gateway.micro_balance(username) == before and len(ledger_rows(gateway, username)) == ledger_before
    r = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                   json={"model": "claude-sonnet-4", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text


def test_balance_cannot_pass_the_documented_maximum(gateway):
    """Credits up to 1,000,000,000 are accepted; one more is a 409 and nothing moves."""
    username = gateway.create_user(0)
    r = gateway.admin.post(f"/admin/api/users/{username}/credits", json={"amount": 1_000_000_000, "reason": "max"})
    assert r.status_code == 200 and r.json()["credits"] == 1_000_000_000
    r = gateway.admin.post(f"/admin/api/users/{username}/credits", json={"amount": 1, "reason": "over"})
    assert r.status_code == 409 and r.json()["error"]["param"] == "amount"
    assert gateway.micro_balance(username) == (to_micro(1_000_000_000), 0)
    assert [e["amount"] for e in ledger_rows(gateway, username)] == [to_micro(1_000_000_000)]


@pytest.mark.parametrize("limits, param", [
    ({"rpm": 10 ** 30}, "rpm"), ({"rpm": -1}, "rpm"), ({"rpm": True}, "rpm"), ({"rpm": 2.5}, "rpm"),
    ({"rpm": "lots"}, "rpm"),
    ({"expires_at": 5}, "expires_at"), ({"expires_at": "soon"}, "expires_at"),
    ({"expires_at": "0001-01-01T00:00:00+01:00"}, "expires_at"), ({"expires_at": [2030]}, "expires_at"),
    ({"allowed_models": 5}, "allowed_models"), ({"allowed_models": [5]}, "allowed_models"),
    ({"allowed_models": {"a": 1}}, "allowed_models"), ({"allowed_models": ["m"] * 101}, "allowed_models"),
    ({"credit_cap": 1e27}, "credit_cap"), ({"credit_cap": "1e999999999"}, "credit_cap"),
    ({"credit_cap": True}, "credit_cap"), ({"credit_cap": -1}, "credit_cap"), ({"credit_cap": [1]}, "credit_cap"),
], ids=lambda v: repr(v)[:40])
def test_bad_key_limits_are_clear_400s(gateway, limits, param):
    """Every wrongly typed or out-of-range key limit is a 400 naming the field; no key is made."""
    username = gateway.create_user(1)
    r = gateway.admin.post(f"/admin/api/users/{username}/keys", json={"name": "k", **limits})
    admin_error(r, 400, param)
    assert gateway.user(username)["keys"] == []


@pytest.mark.parametrize("path, body, param", [
    ("/admin/api/users", {"username": "rich", "password": "passw0rd!", "credits": 1e27}, "credits"),
    ("/admin/api/users", {"username": "minus", "password": "passw0rd!", "credits": -5}, "credits"),
    ("/admin/api/topup-codes", {"credits": 1e27}, "credits"),
    ("/admin/api/topup-codes", {"credits": "Infinity"}, "credits"),
], ids=["user-credits-huge", "user-credits-negative", "code-credits-huge", "code-credits-inf"])
def test_other_admin_amounts_are_clear_400s(gateway, path, body, param):
    """Amounts when creating users and top-up codes are checked first: a 400, and nothing made."""
    admin_error(gateway.admin.post(path, json=body), 400, param)
    assert gateway.run(gateway.services.db.users.count_documents({})) == 0
    assert gateway.run(gateway.services.db.topup_codes.count_documents({})) == 0


def test_a_failed_ledger_write_is_repaired_and_never_loses_the_entry(gateway):
    """If the ledger refuses the entry of a credit movement (here a unique index on `note`
    that the entry breaks), the credits still move and the answer is 200; once the ledger
    accepts writes again, reading the ledger writes the entry: balance and ledger agree."""
    site = signed_in(gateway)
    db = gateway.services.db
    gateway.run(db.ledger.create_index("note", unique=True))
    gateway.run(db.ledger.insert_one({"user_id": None, "kind": "adjustment", "amount": 0, "note": "refund #7"}))
    r = gateway.admin.post(f"/admin/api/users/{site.username}/credits", json={"amount": 4.5, "reason": "refund #7"})
    assert r.status_code == 200 and r.json()["credits"] == 4.5
    assert gateway.micro_balance(site.username) == (4_500_000, 0) and ledger_rows(gateway, site.username) == []
    gateway.run(db.ledger.drop_index("note_1"))
    page = site.get("/topup")
    assert page.status_code == 200 and "refund #7" in page.text
    rows = ledger_rows(gateway, site.username)
    assert [(e["amount"], e["balance_after"]) for e in rows] == [(4_500_000, 4_500_000)]
    assert sum(e["amount"] for e in rows) == sum(gateway.micro_balance(site.username))
    site.get("/topup")  # repairing again writes nothing twice
    assert len(ledger_rows(gateway, site.username)) == 1


# ---------------------------------------------------------------- 10: sessions

def test_a_copied_session_cookie_opens_nothing_after_log_out(gateway):
    """Log-out ends the session on the server: a copy of the cookie taken before is signed out."""
    site = signed_in(gateway)
    stolen = site.http.cookies["cheaplm_session"]
    assert site.post("/logout").status_code == 302
    thief = Site(gateway)
    thief.http.cookies.set("cheaplm_session", stolen, domain="127.0.0.1")
    r = thief.get("/dashboard")
    assert r.status_code == 302 and r.headers["location"].startswith("/login")


def test_log_out_everywhere_ends_every_session(gateway):
    """"Log out everywhere" on the account page signs out this browser and every other one."""
    site = signed_in(gateway)
    other = Site(gateway)
    assert other.login(site.username).status_code == 302 and other.get("/dashboard").status_code == 200
    assert "Log out everywhere" in site.get("/account").text
    r = site.post("/account", {"action": "logout_everywhere"})
    assert r.status_code == 302
    assert site.get("/dashboard").status_code == 302 and other.get("/dashboard").status_code == 302
    assert Site(gateway).login(site.username).status_code == 302  # the account itself is fine


# ---------------------------------------------------------------- 12: smaller points

def test_short_admin_token_stops_start_up(tmp_path):
    """`python app.py` with ADMIN_API_TOKEN shorter than 32 characters exits 2 with one line saying how to make one."""
    proc = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env={"ADMIN_API_TOKEN": "change-me", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "ADMIN_API_TOKEN" in proc.stderr and "32" in proc.stderr and "secrets.token_urlsafe" in proc.stderr


def test_unknown_and_used_top_up_codes_get_the_same_answer(gateway):
    """A code that was never made and one already redeemed are refused identically."""
    site = signed_in(gateway)
    code = gateway.admin.post("/admin/api/topup-codes", json={"credits": 1}).json()["codes"][0]
    assert site.post("/topup", {"code": code}).status_code == 302
    used = site.post("/topup", {"code": code})
    unknown = site.post("/topup", {"code": "CLM-AAAA-AAAA-AAAA-AAAA"})
    assert used.status_code == unknown.status_code == 400
    assert inline_error(used.text, "code") == inline_error(unknown.text, "code")
    assert gateway.micro_balance(site.username) == (1_000_000, 0)


def test_api_keys_in_a_query_string_are_not_logged(gateway, caplog):
    """A key sent as ?key=, ?api_key= or ?x-api-key= is blanked in the access log line."""
    _, key = gateway.user_with_key()
    caplog.set_level(logging.INFO, logger="tornado.access")
    for query in (f"key={key}", f"api_key={key}&beta=true", f"beta=true&x-api-key={key}", f"q={key}"):
        r = httpx.get(f"{gateway.url}/v1/models?{query}")
        assert r.status_code < 500
    # The gateway's thread logs a request just after answering it: wait for the last line.
    deadline = time.monotonic() + 5
    while True:
        lines = [rec.getMessage() for rec in caplog.records if rec.name == "tornado.access"]
        if len(lines) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(lines) >= 4 and all(key not in line for line in lines)
    assert any(re.search(r"api_key=\[redacted\]&beta=true", line) for line in lines)


# ---------------------------------------------------------------- 1: bodies without a key

def raw_request(gw, head: str, body: bytes = b"") -> socket.socket:
    """Open a connection and send `head` (request line and headers, no blank line) and the
    first bytes of a body; the caller reads what comes back."""
    sock = socket.create_connection(("127.0.0.1", int(gw.url.rsplit(":", 1)[1])), timeout=20)
    sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Everything the server sends until it closes the connection: (status, headers, body);
    status 0 when it closed without answering."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:  # closed with body bytes unread: what came before stands
        pass
    sock.close()
    if not data:
        return 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def api_error(status_body: tuple[int, dict, bytes], status: int, error_type: str) -> str:
    got, _, body = status_body
    assert got == status, (got, body)
    payload = json.loads(body)
    assert payload["type"] == "error" and payload["error"]["type"] == error_type, payload
    return payload["error"]["message"]


def budget_used(gw) -> int:
    budget = gw.app.settings.get("body_budget")
    return budget.used if budget is not None else 0


def test_bodies_without_a_key_are_refused_at_the_headers(gateway_factory):
    """20 connections without a valid key each declare a 512 kB body and stall after the
    headers: every one gets its 401 without sending any of it, the connection is closed, and
    nothing is buffered (the gateway holds no reservation)."""
    gw = gateway_factory(max_body_mb=1)
    socks = [raw_request(gw, f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: sk-wrong-{i}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {512 * 1024}")
             for i in range(20)]
    answers = [read_answer(s) for s in socks]
    for answer in answers:
        assert "API key" in api_error(answer, 401, "authentication_error")
    assert budget_used(gw) == 0 and gw.fake.requests == []


def test_an_over_long_content_length_is_a_413_at_the_headers(gateway_factory):
    """A declared body above MAX_BODY_MB is refused before it is sent, with or without a key."""
    gw = gateway_factory(max_body_mb=1)
    _, key = gw.user_with_key(10)
    for auth in (f"x-api-key: {key}", "x-api-key: sk-nope"):
        answer = read_answer(raw_request(gw, f"POST /v1/messages HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
                                             f"Content-Length: {60 * 1024 * 1024}"))
        assert "limit is 1048576 bytes" in api_error(answer, 413, "request_too_large")
    assert gw.fake.requests == []


def test_bodies_in_flight_are_bounded_and_slow_bodies_time_out(gateway_factory):
    """With MAX_BODIES_MB=1 and 400 kB bodies, two stalled bodies fit; the third is refused
    at its headers with 503 and retry-after; stalled bodies are cut off after BODY_TIMEOUT
    and their reservation released."""
    gw = gateway_factory(max_body_mb=1, max_bodies_mb=1, body_timeout=1)
    _, key = gw.user_with_key(10)
    head = (f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {400 * 1024}")
    stalled = [raw_request(gw, head, b"{") for _ in range(2)]
    for _ in range(200):  # both reservations placed (the gateway read their headers)
        if budget_used(gw) == 800 * 1024:
            break
        time.sleep(0.02)
    third = read_answer(raw_request(gw, head, b"{"))
    api_error(third, 503, "overloaded_error")
    assert third[1]["retry-after"] == "1"
    for sock in stalled:  # closed by BODY_TIMEOUT without an answer
        assert read_answer(sock)[0] == 0
    for _ in range(200):  # released as each connection's close is handled
        if budget_used(gw) == 0:
            break
        time.sleep(0.02)
    assert budget_used(gw) == 0 and gw.fake.requests == []
    # After that, a whole body goes through.
    r = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key},
                   json={"model": "claude-sonnet-4", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------- 5: overdraft

SONNET_MICRO_PER_TOKEN = 130  # claude-sonnet-4: 0.13 credits per 1k tokens


def text_call(gw, key: str, text: str, *, headers: dict | None = None, max_tokens: int = 5) -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key, **(headers or {})}, timeout=30,
                      json={"model": "claude-sonnet-4", "max_tokens": max_tokens,
                            "messages": [{"role": "user", "content": text}]})


def test_concurrent_overdraft_stays_within_the_holds(gateway):
    """A user with 1.1 credits sends 20 concurrent requests of ~2,000 bytes whose upstream
    reports 1,990 input tokens each (almost one per byte: the most the body can hold, four
    times half its bytes). Every hold covers its call's real cost, so the balance never goes
    below zero (before: 7 calls passed holds of half the bytes and the balance ended at
    −0.7 credits)."""
    username, key = gateway.user_with_key(1.1)
    text = "x" * 1900
    gateway.fake.default = Scenario(usage={"input_tokens": 1990, "output_tokens": 5})

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            body = {"model": "claude-sonnet-4", "max_tokens": 5, "messages": [{"role": "user", "content": text}]}
            return await asyncio.gather(*(client.post("/v1/messages", headers={"x-api-key": key}, json=body)
                                          for _ in range(20)))
    statuses = [r.status_code for r in asyncio.run(storm())]
    assert set(statuses) <= {200, 402, 403} and 200 in statuses, statuses
    balance, held = gateway.micro_balance(username)
    rows = gateway.usage(username)
    assert held == 0 and balance >= 0, balance
    assert all(r["overage"] == 0 and r["credits"] <= r["hold"] for r in rows)
    assert balance == to_micro(1.1) - sum(r["credits"] for r in rows)


def test_unbounded_input_overage_is_recorded_and_a_negative_balance_refuses_calls(gateway):
    """With a long-context beta the input is not bounded by the body: the hold covers the
    model's max_input (200k tokens), the upstream reports 300k, the real cost is debited and
    the 100k-token overage is on the usage record and the ledger entry; the balance is then
    below zero, by exactly that overage at most, and the next call is a 403."""
    username, key = gateway.user_with_key(30)
    gateway.fake.enqueue(Scenario(usage={"input_tokens": 300_000, "output_tokens": 5}))
    r = text_call(gateway, key, "hi", headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert r.status_code == 200, r.text
    row = gateway.usage(username)[0]
    assert row["hold"] == (200_000 + 5) * SONNET_MICRO_PER_TOKEN
    assert row["credits"] == 300_005 * SONNET_MICRO_PER_TOKEN
    assert row["overage"] == row["credits"] - row["hold"] == 100_000 * SONNET_MICRO_PER_TOKEN
    usage_entry = [e for e in ledger_rows(gateway, username) if e["kind"] == "usage"][0]
    assert usage_entry["overage"] == row["overage"]
    balance, held = gateway.micro_balance(username)
    assert held == 0 and -row["overage"] <= balance == to_micro(30) - row["credits"] < 0
    refused = text_call(gateway, key, "again")
    assert refused.status_code == 403 and refused.json()["error"] == {
        "type": "permission_error", "message": "Insufficient balance. Please top up your account."}
    assert len(gateway.fake.requests) == 1


def test_a_url_image_holds_the_configured_amount(gateway_factory):
    """Input the body cannot bound (an image by URL) is held at UNBOUNDED_INPUT_TOKENS more."""
    gw = gateway_factory(unbounded_input_tokens=50_000)
    username, key = gw.user_with_key(100)
    content = [{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
               {"type": "text", "text": "what is it?"}]
    r = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key}, timeout=30,
                   json={"model": "claude-sonnet-4", "max_tokens": 5, "messages": [{"role": "user", "content": content}]})
    assert r.status_code == 200, r.text
    assert gw.usage(username)[0]["hold"] >= (50_000 + 5) * SONNET_MICRO_PER_TOKEN


# ---------------------------------------------------------------- 6: output after a disconnect

def test_output_estimate_follows_the_delivered_text():
    """Known token counts: one-token deltas count one token each (before: 17 tokens for 3
    deltas of a long envelope); longer text counts ~4 bytes a token, never more than its
    bytes; thinking and tool-input text count too; signatures do not."""
    from services.protocols.anthropic import AnthropicPassthrough

    def ev(index: int, delta: dict) -> bytes:
        return (b"event: content_block_delta\ndata: " + json.dumps(
            {"type": "content_block_delta", "index": index, "delta": delta}).encode() + b"\n\n")

    adapter = AnthropicPassthrough()
    adapter.events([ev(12, {"type": "text_delta", "text": w}) for w in (" one", " two", " six")])
    assert adapter.tracker.estimated_output() == 3
    adapter.events([ev(13, {"type": "signature_delta", "signature": "E" * 400})])
    assert adapter.tracker.estimated_output() == 3
    # 100 words of ~5 bytes a word (about 100-130 tokens of English): 500 bytes → 125.
    adapter = AnthropicPassthrough()
    adapter.events([ev(0, {"type": "thinking_delta", "thinking": " word" * 50}),
                    ev(1, {"type": "input_json_delta", "partial_json": " word" * 50})])
    estimate = adapter.tracker.estimated_output()
    assert 100 <= estimate <= 130 and estimate <= 500  # tolerance: ±30% of ~100 tokens


def test_a_disconnect_bills_at_most_the_deltas_delivered(gateway):
    """Over HTTP: one-word deltas, the client leaves after three: the output billed is at
    least those three and at most the deltas the upstream had sent."""
    username, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(text=" ".join(["go"] * 200), chunks=200, delay=0.05))
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={"x-api-key": key}, timeout=20,
                      json={"model": "claude-sonnet-4", "max_tokens": 1000, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("event: content_block_delta")
            if seen == 3:
                break
    rec = gateway.fake.requests[-1]
    row = wait_usage(gateway, username)
    deltas_sent = rec.events_sent - 3  # message_start, content_block_start, ping
    assert row["status"] == 499 and 3 <= row["output_tokens"] <= deltas_sent, (row, deltas_sent)


def wait_usage(gw, username: str, count: int = 1) -> dict:
    for _ in range(250):
        rows = gw.usage(username)
        if len(rows) >= count:
            return rows[0]
        time.sleep(0.02)
    raise AssertionError("no usage record written")


# ---------------------------------------------------------------- 7: failed streams cost nothing

@pytest.mark.parametrize(("scenario", "settings"), [
    pytest.param(Scenario(chunks=6, error_after=2), {}, id="error-event"),
    pytest.param(Scenario(chunks=3, delay=5), {"upstream_idle_timeout": 0.3}, id="idle-timeout"),
])
def test_a_failed_stream_costs_nothing(gateway_factory, scenario, settings):
    """A mid-stream upstream error or an idle upstream: the call is recorded (502, its
    tokens kept, charge_waived) and charged nothing; no ledger entry."""
    gw = gateway_factory(**settings)
    username, key = gw.user_with_key(10)
    gw.fake.enqueue(scenario)
    r = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key}, timeout=30,
                   json={"model": "claude-sonnet-4", "max_tokens": 100, "stream": True,
                         "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and "event: error" in r.text
    row = wait_usage(gw, username)
    assert (row["status"], row["credits"], row["charge_waived"]) == (502, 0, True)
    assert row["input_tokens"] == 25 and row["error"]
    assert gw.micro_balance(username) == (to_micro(10), 0)
    assert [e["kind"] for e in ledger_rows(gw, username)] == ["adjustment"]


# ---------------------------------------------------------------- 8: forwarded headers

FORWARDED = ("anthropic-version", "anthropic-beta", "anthropic-workspace-id")
ROUTES = (("/v1/messages", {"model": "claude-sonnet-4", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
          ("/v1/chat/completions", {"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}]}),
          ("/v1/messages/count_tokens", {"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}]}))


@pytest.mark.parametrize("header", FORWARDED)
def test_a_non_ascii_forwarded_header_is_a_400_naming_it(gateway, header):
    """A non-ASCII byte (UTF-8 é) or a NUL in a forwarded header, on every route that forwards
    it: 400 invalid_request_error naming the header, no upstream call, nothing debited."""
    username, key = gateway.user_with_key(10)
    for path, body in ROUTES:
        for value in (b"caf\xc3\xa9", b"2023\x00x"):
            raw = json.dumps(body).encode()
            sock = raw_request(gateway, f"POST {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n"
                                        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
                                        f"{header}: " + value.decode("latin-1"), raw)
            status, _, answer = read_answer_once(sock)
            assert status == 400, (path, value, answer)
            if answer:  # Tornado itself refuses a NUL in a header line, before the handler
                message = json.loads(answer)["error"]["message"]
                assert header in message and json.loads(answer)["error"]["type"] == "invalid_request_error"
    assert gateway.fake.requests == []
    assert gateway.micro_balance(username) == (to_micro(10), 0)


def read_answer_once(sock: socket.socket) -> tuple[int, dict, bytes]:
    """One keep-alive answer with a Content-Length (or one the server closed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if ": " in line)}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    sock.close()
    return (int(lines[0].split()[1]) if data else 0), headers, body


# ---------------------------------------------------------------- 11: count_tokens

COUNT = {"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "count me"}]}


def count_requests(gw) -> int:
    return sum(1 for r in gw.fake.requests if r.path.endswith("count_tokens"))


def test_count_tokens_follows_the_keys_rate_limit(gateway):
    """A key limited to 2 requests a minute: 2 counts pass, the rest are 429 with
    retry-after and never reach the upstream."""
    username = gateway.create_user(10)
    key = gateway.create_key(username, rpm=2)
    answers = [httpx.post(gateway.url + "/v1/messages/count_tokens", headers={"x-api-key": key},
                          json={**COUNT, "messages": [{"role": "user", "content": f"count {i}"}]})
               for i in range(6)]
    assert [a.status_code for a in answers] == [200, 200, 429, 429, 429, 429]
    assert answers[2].json()["error"]["type"] == "rate_limit_error" and answers[2].headers["retry-after"]
    assert count_requests(gateway) == 2


def test_count_tokens_needs_credits_and_a_live_account(gateway):
    """Zero credits: 403 like a billed call, no upstream call; nothing is billed for counts."""
    _, broke = gateway.user_with_key(0)
    r = httpx.post(gateway.url + "/v1/messages/count_tokens", headers={"x-api-key": broke}, json=COUNT)
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert count_requests(gateway) == 0
    username, key = gateway.user_with_key(1)
    r = httpx.post(gateway.url + "/v1/messages/count_tokens", headers={"x-api-key": key}, json=COUNT)
    assert r.status_code == 200 and gateway.micro_balance(username) == (to_micro(1), 0)


def test_identical_count_tokens_bodies_are_answered_from_the_cache(gateway):
    """Twenty identical counts in a burst reach the upstream once and get the same answer;
    a different body is counted afresh."""
    _, key = gateway.user_with_key(1)
    answers = [httpx.post(gateway.url + "/v1/messages/count_tokens", headers={"x-api-key": key}, json=COUNT)
               for _ in range(20)]
    assert {a.status_code for a in answers} == {200} and len({a.content for a in answers}) == 1
    assert count_requests(gateway) == 1
    other = httpx.post(gateway.url + "/v1/messages/count_tokens", headers={"x-api-key": key},
                       json={**COUNT, "messages": [{"role": "user", "content": "something else"}]})
    assert other.status_code == 200 and count_requests(gateway) == 2


# ---------------------------------------------------------------- 12: query string

def test_only_the_beta_query_parameter_is_forwarded(gateway):
    """?beta=true goes upstream; anything else (a key put in the URL, say) does not."""
    _, key = gateway.user_with_key(10)
    r = httpx.post(gateway.url + f"/v1/messages?beta=true&api_key={key}&x=1", headers={"x-api-key": key},
                   json=ROUTES[0][1])
    assert r.status_code == 200, r.text
    assert gateway.fake.requests[-1].query == "beta=true"
    r = httpx.post(gateway.url + f"/v1/messages/count_tokens?key={key}", headers={"x-api-key": key}, json=COUNT)
    assert r.status_code == 200 and gateway.fake.requests[-1].query == ""


# ---------------------------------------------------------------- the attack suite: API input

MSG = {"model": "claude-sonnet-4", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
CHAT = {"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}]}
GARBAGE = [None, True, -1, 0, 1.5, 10 ** 30, "", "x", [], [1], {}, {"a": 1}]


def bad_bodies() -> list:
    """(id, path, raw body) of invalid requests on the billed routes."""
    cases = [("non-utf8", "/v1/messages", b'{"model": "\xff\xfe"}'),
             ("not-json", "/v1/messages", b"{model: 1"),
             ("array", "/v1/messages", b"[1, 2]"),
             ("string", "/v1/chat/completions", b'"hi"'),
             ("empty", "/v1/messages", b""),
             ("nested", "/v1/messages", b'{"model": "claude-sonnet-4", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
             ("nested-chat", "/v1/chat/completions", b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
             ("non-utf8-chat", "/v1/chat/completions", b'{"model": "\xff"}')]
    # (max_tokens above the model's limit is clamped, as documented: not garbage.)
    fields = {"max_tokens": [v for v in GARBAGE if v != 10 ** 30] + ["5"], "model": GARBAGE + ["nope-model"], "messages": GARBAGE + [[{"role": "x"}]],
              "stream": [v for v in GARBAGE if v is not True] + ["yes"], "tools": [v for v in GARBAGE[2:] if v != []] + [[{"name": 5}]]}
    for field_name, values in fields.items():
        for value in values:
            cases.append((f"{field_name}={value!r}"[:40], "/v1/messages", json.dumps({**MSG, field_name: value}).encode()))
            if field_name != "max_tokens":
                cases.append((f"chat {field_name}={value!r}"[:40], "/v1/chat/completions",
                              json.dumps({**CHAT, field_name: value}).encode()))
    return cases


def assert_documented_error(r: httpx.Response, status: int | tuple) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses and r.status_code != 500, (r.status_code, r.text[:300])
    body = r.json()
    assert body["type"] == "error" if "type" in body else True
    assert isinstance(body["error"]["message"], str) and body["error"]["message"] and body["error"]["type"]
    return body["error"]


def test_invalid_bodies_are_clear_400s_with_no_upstream_call_and_nothing_debited(gateway):
    """Every malformed, mistyped or oversized body on the billed routes (and count_tokens):
    a documented 4xx naming the problem, no 500, no upstream call, nothing debited."""
    username, key = gateway.user_with_key(10)
    with httpx.Client(base_url=gateway.url, headers={"x-api-key": key, "Content-Type": "application/json"},
                      timeout=30) as client:
        for case_id, path, raw in bad_bodies():
            r = client.post(path, content=raw)
            if r.status_code == 200 and "stream" in case_id:
                continue  # a falsy `stream` (false-like) the chat route reads as "not streamed" is fine
            assert r.status_code in (400, 413), (case_id, r.text[:200])
            assert_documented_error(r, (400, 413))
        r = client.post("/v1/messages/count_tokens", content=b"[]")
        assert_documented_error(r, 400)
        big = b'{"model": "claude-sonnet-4", "pad": "' + b"x" * (33 * 1024 * 1024) + b'"}'
        assert_documented_error(client.post("/v1/messages", content=big), 413)
    requests = [r for r in gateway.fake.requests if r.path.endswith("/messages")]
    assert requests == [] or all(r.json and r.json.get("stream") in (False, None) for r in requests)
    assert gateway.micro_balance(username)[1] == 0
    debited = sum(r["credits"] for r in gateway.usage(username))
    assert gateway.micro_balance(username)[0] == to_micro(10) - debited


def test_bad_keys_are_refused_in_the_documented_shape(gateway):
    """Missing, malformed, unknown, revoked and frozen keys (and a frozen user): 401 or 403
    in the documented shape, before the body is read, no upstream call."""
    username, key = gateway.user_with_key(10)
    revoked = gateway.create_key(username, "revoked")
    frozen = gateway.create_key(username, "frozen")
    ids = {k["name"]: k["id"] for k in gateway.user(username)["keys"]}
    assert gateway.admin.patch(f"/admin/api/keys/{ids['revoked']}", json={"revoked": True}).status_code == 200
    assert gateway.admin.patch(f"/admin/api/keys/{ids['frozen']}", json={"frozen": True}).status_code == 200
    other, other_key = gateway.user_with_key(10)
    assert gateway.admin.patch(f"/admin/api/users/{other}", json={"frozen": True}).status_code == 200
    cases = [({}, 401), ({"x-api-key": ""}, 401), ({"Authorization": "Bearer"}, 401),
             ({"Authorization": "Basic dXNlcjpwYXNz"}, 401), ({"x-api-key": "sk-" + "A" * 60}, 401),
             ({"x-api-key": "not a key at all"}, 401), ({"x-api-key": revoked}, 401),
             ({"x-api-key": frozen}, 403), ({"x-api-key": other_key}, 403)]
    for headers, status in cases:
        for path, body in ROUTES:
            r = httpx.post(gateway.url + path, headers=headers, json=body)
            assert_documented_error(r, status), (headers, path)
        r = httpx.get(gateway.url + "/v1/models", headers=headers)
        assert_documented_error(r, status)
    assert gateway.fake.requests == []
    assert gateway.micro_balance(username) == (to_micro(10), 0)


@pytest.mark.parametrize("path", ["/api/v1/v1/messages", "/v1/v1/messages", "/api/v1/messages/", "/messages",
                                  "/api/messages/count_tokens", "/api/v1/v1/models"])
def test_path_variants_of_the_api_routes_work(gateway, path):
    """The documented path variants reach their route."""
    _, key = gateway.user_with_key(10)
    body = CHAT if "chat" in path else (ROUTES[2][1] if "count" in path else MSG)
    r = (httpx.get if path.endswith("models") else httpx.post)(gateway.url + path, headers={"x-api-key": key},
                                                                **({} if path.endswith("models") else {"json": body}))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/v1/v1/v1/messages", "/api/api/v1/messages", "/v1/messages/x", "/v1//messages",
                                  "/v1/messages/count_tokens/x", "/v1/%2e%2e/admin/api/users",
                                  "/v1/v1/chat/completions"])
def test_unknown_path_variants_are_documented_404s(gateway, path):
    """Other variants are a JSON 404 in the documented shape, never a 500 or an upstream call."""
    _, key = gateway.user_with_key(10)
    r = httpx.post(gateway.url + path, headers={"x-api-key": key}, json=MSG)
    assert r.status_code in (404, 405), r.text
    if path.startswith(("/v1", "/api")):
        assert_documented_error(r, (404, 405))
    assert gateway.fake.requests == []


def test_content_length_with_transfer_encoding_is_refused(gateway):
    """A request with both Content-Length and Transfer-Encoding (a smuggling attempt) is a
    400 and reaches neither a handler nor the upstream."""
    _, key = gateway.user_with_key(10)
    raw = json.dumps(MSG).encode()
    chunked = f"{len(raw):x}\r\n".encode() + raw + b"\r\n0\r\n\r\n"
    sock = raw_request(gateway, f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n"
                                f"Content-Length: 4\r\nTransfer-Encoding: chunked", chunked)
    status, _, _ = read_answer(sock)
    assert status == 400 and gateway.fake.requests == []
    for length in ("abc", "1, 1", "-1", "9" * 40, "١"):
        sock = raw_request(gateway, f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n"
                                    f"Content-Length: {length}".encode().decode("latin-1"), raw)
        status, _, body = read_answer(sock)
        assert status == 400, (length, body)
    assert gateway.fake.requests == [] and budget_used(gateway) == 0


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\x00b", "caf\xe9", "\u2603"])
def test_control_and_non_ascii_bytes_in_any_header_are_never_a_500(gateway, value):
    """CR, LF, NUL and non-ASCII bytes in headers (forwarded or not, key included): a 4xx,
    no upstream call."""
    _, key = gateway.user_with_key(10)
    raw = json.dumps(MSG).encode()
    for header in ("anthropic-version", "x-api-key", "x-custom"):
        line = f"{header}: {value}" if header != "x-api-key" else f"x-api-key: {key}{value}"
        extra = f"\r\nx-api-key: {key}" if header != "x-api-key" else ""
        sock = raw_request(gateway, f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: {len(raw)}"
                                    f"{extra}\r\n{line}".encode("utf-8").decode("latin-1"), raw)
        status, _, body = read_answer_once(sock)
        if header == "x-custom" and "\r" not in value and "\n" not in value and "\x00" not in value:
            assert status == 200, body  # not forwarded: harmless
            continue
        assert 400 <= status < 500, (header, value, status, body)
    assert all(r.json and r.json["messages"] == MSG["messages"] for r in gateway.fake.requests)
    assert all("x-custom" not in r.headers for r in gateway.fake.requests)


# ---------------------------------------------------------------- the attack suite: pages

def test_form_posts_without_an_xsrf_token_are_refused_and_change_nothing(gateway):
    """A signed-in browser's cookies without the _xsrf token (a cross-site form): 403 on
    every form, no key made, no code redeemed, no password changed."""
    site = signed_in(gateway)
    code = gateway.admin.post("/admin/api/topup-codes", json={"credits": 2}).json()["codes"][0]
    forms = [("/keys", {"name": "x"}), ("/topup", {"code": code}),
             ("/account", {"action": "password", "current_password": PASSWORD, "new_password": "new-pass-123",
                           "confirm": "new-pass-123"}), ("/logout", {})]
    with httpx.Client(base_url=gateway.url, cookies={k: v for k, v in site.http.cookies.items() if k != "_xsrf"},
                      follow_redirects=False) as browser:
        for path, form in forms:
            assert browser.post(path, data=form).status_code == 403, path
    user = gateway.user(site.username)
    assert user["keys"] == [] and user["credits"] == 0
    assert site.get("/dashboard").status_code == 200  # still signed in: the log-out was refused too


@pytest.mark.parametrize("target", ["///evil.com", "/%2F%2Fevil.com", "/\x00/evil.com", "https:evil.com",
                                    "//evil.com/%2e%2e", " //evil.com"])
def test_more_open_redirect_targets_stay_on_site(gateway, target):
    """next= values that a browser could read as another site: the log-in lands on a local page."""
    username = gateway.create_user(0)
    r = Site(gateway).login(username, next=target)
    location = r.headers["location"]
    assert r.status_code == 302 and location.startswith("/") and not location.startswith(("//", "/\\"))
    assert "evil.com" not in location or location.startswith("/%2F")


def test_another_users_key_ids_and_usage_filters_reveal_and_change_nothing(gateway):
    """IDOR: a user who knows another user's key id cannot see, rename, freeze or revoke it,
    nor see its usage through the dashboard's key filter."""
    victim = signed_in(gateway, credits=10)
    victim_key, victim_key_id = victim.create_key("victim-key")
    assert httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": victim_key}, json=MSG).status_code == 200
    attacker = signed_in(gateway)
    assert attacker.get(f"/keys/{victim_key_id}").status_code == 404
    for form in ({"action": "rename", "name": "pwned"}, {"action": "freeze"}):
        assert attacker.post(f"/keys/{victim_key_id}", form).status_code == 404
    assert attacker.post(f"/keys/{victim_key_id}/revoke", {}).status_code == 404
    request_id = gateway.usage(victim.username)[0]["request_id"]
    page = attacker.get(f"/dashboard?key={victim_key_id}")
    assert page.status_code in (200, 400) and "victim-key" not in page.text and request_id not in page.text
    csv = attacker.get(f"/dashboard/usage.csv?key={victim_key_id}")
    assert csv.status_code in (200, 400) and "victim-key" not in csv.text and request_id not in csv.text
    key = [k for k in gateway.user(victim.username)["keys"] if k["id"] == victim_key_id][0]
    assert key["name"] == "victim-key" and not key["frozen"]
    assert httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": victim_key}, json=MSG).status_code == 200


def test_concurrent_top_up_redemption_over_http_credits_once(gateway):
    """Twenty simultaneous redemptions of one code through the top-up form (one browser):
    credited exactly once, one ledger entry, every other answer a clear form error."""
    site = signed_in(gateway)
    code = gateway.admin.post("/admin/api/topup-codes", json={"credits": 3}).json()["codes"][0]
    xsrf = site.xsrf()

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, cookies=dict(site.http.cookies), timeout=30,
                                     follow_redirects=False) as client:
            return await asyncio.gather(*(client.post("/topup", data={"_xsrf": xsrf, "code": code}) for _ in range(20)))
    statuses = [r.status_code for r in asyncio.run(race())]
    assert 500 not in statuses and set(statuses) <= {200, 302, 400, 429}, statuses
    assert gateway.user(site.username)["credits"] == 3
    assert [e["kind"] for e in ledger_rows(gateway, site.username)].count("topup") == 1


# ---------------------------------------------------------------- the attack suite: fuzzing the parsers

def fuzz_catalog():
    """The seeded catalog, loaded from an in-memory database (no gateway)."""
    from mongomock_motor import AsyncMongoMockClient

    from services.gateway.catalog import CatalogService
    catalog = CatalogService(AsyncMongoMockClient()["fuzz"])
    asyncio.run(catalog.seed())
    return catalog


FUZZ_CATALOG = None
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)
BLOCK_TYPES = st.sampled_from(["text", "image", "document", "tool_use", "tool_result", "thinking", "x",
                               "image_url", "input_text", "function"])
BLOCKS = st.fixed_dictionaries({"type": BLOCK_TYPES}, optional={
    "text": JSON_VALUES, "source": JSON_VALUES, "content": JSON_VALUES, "image_url": JSON_VALUES,
    "id": JSON_VALUES, "name": JSON_VALUES, "input": JSON_VALUES})
MESSAGES = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", "developer", "x"]) | JSON_VALUES},
    optional={"content": st.text(max_size=20) | st.lists(BLOCKS | JSON_VALUES, max_size=3) | JSON_VALUES,
              "tool_calls": JSON_VALUES, "tool_call_id": JSON_VALUES, "name": JSON_VALUES}), max_size=4)
BODIES = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["claude-sonnet-4", "claude-opus-4-6", "sonnet-4.6", "gpt-4", "claude-sonnet-4-thinking"])
    | JSON_VALUES,
    "messages": MESSAGES | JSON_VALUES, "max_tokens": st.integers(-5, 10 ** 9) | JSON_VALUES,
    "max_completion_tokens": JSON_VALUES, "stream": st.booleans() | JSON_VALUES, "tools": JSON_VALUES,
    "tool_choice": JSON_VALUES, "system": JSON_VALUES, "thinking": JSON_VALUES, "temperature": JSON_VALUES,
    "stop": JSON_VALUES, "response_format": JSON_VALUES, "reasoning_effort": JSON_VALUES, "input": JSON_VALUES,
    "instructions": JSON_VALUES, "stream_options": JSON_VALUES, "n": JSON_VALUES})


def catalog_for_fuzz():
    global FUZZ_CATALOG
    if FUZZ_CATALOG is None:
        FUZZ_CATALOG = fuzz_catalog()
    return FUZZ_CATALOG


def only_invalid_request(fn, *args) -> None:
    """`fn(*args)` either works or raises InvalidRequest: never another exception."""
    try:
        fn(*args)
    except InvalidRequest as exc:
        assert exc.message and exc.status == 400
    except GatewayError as exc:
        raise AssertionError(f"{type(exc).__name__} ({exc.status}) from the parser: {exc.message}") from exc


def translate_chat(body: dict, cursor: bool) -> None:
    if cursor:
        body = responses_to_chat(body)
    model, thinking = chat_model(body, catalog_for_fuzz())
    request, _ = prepare_chat(body, model, force_thinking=thinking)
    assert request.body and request.max_tokens >= 1 and request.est_input_tokens >= len(request.body)


def prepare_raw(raw: bytes) -> None:
    request = prepare_messages(raw, catalog_for_fuzz())
    assert request.max_tokens >= 1 and request.est_input_tokens >= 64


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES)
def test_fuzz_messages_parser_raises_only_invalid_request(body):
    raw = json.dumps(body).encode()  # json: integers beyond 64 bits too
    only_invalid_request(prepare_raw, raw)
    only_invalid_request(prepare_count_tokens, raw, catalog_for_fuzz())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzz_messages_parser_on_raw_bytes(raw):
    only_invalid_request(prepare_raw, raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES, st.booleans())
def test_fuzz_chat_and_cursor_translation_raises_only_invalid_request(body, cursor):
    only_invalid_request(translate_chat, body, cursor)
