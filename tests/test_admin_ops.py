"""Admin operations: every key, top-up code batches (void, expiry, CSV, atomic redemption),
usage filters and CSV, retention, the overview, and sign-up settings."""
from __future__ import annotations

import csv
import datetime as dt
import io
import threading

import httpx
import pytest

from tests.test_admin_console import ADMIN, ADMIN_PASSWORD, admin_site
from tests.test_pages import Site

BODY = {"model": "claude-sonnet-4", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(admin_username=ADMIN, admin_password=ADMIN_PASSWORD)


def call(gw, key: str, model: str = "claude-sonnet-4") -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key}, json={**BODY, "model": model}, timeout=30)


def test_every_key_with_owner_status_spend_and_actions(gw):
    username, key = gw.user_with_key()
    call(gw, key)
    r = gw.admin.get("/admin/api/keys").json()
    assert r["total"] == 1
    k = r["data"][0]
    assert (k["owner"], k["status"], k["credits_used"]) == (username, "active", 0.02275) and k["last_used_at"]
    site = admin_site(gw)
    assert username in site.get("/admin/keys").text
    assert site.post("/admin/keys", {"key_id": k["id"], "action": "freeze"}).status_code == 302
    assert call(gw, key).status_code == 403
    assert gw.admin.get("/admin/api/keys", params={"status": "frozen"}).json()["total"] == 1
    assert site.post("/admin/keys", {"key_id": k["id"], "action": "revoke"}).status_code == 302
    assert call(gw, key).status_code == 401
    assert gw.admin.get("/admin/api/keys", params={"status": "revoked"}).json()["data"][0]["status"] == "revoked"
    assert gw.admin.get("/admin/api/keys", params={"status": "weird"}).json()["error"]["param"] == "status"
    assert [a["action"] for a in gw.admin.get("/admin/api/audit", params={"action": "key."}).json()["data"]] == [
        "key.revoke", "key.update", "key.create"]


def test_topup_batches_list_void_expiry_and_csv(gw):
    r = gw.admin.post("/admin/api/topup-codes", json={"credits": 5, "count": 3, "note": "spring promo",
                                                      "expires_at": "2999-01-01"})
    assert r.status_code == 201
    codes = r.json()["codes"]
    assert gw.admin.post("/admin/api/topup-codes", json={"credits": 5, "expires_at": "2001-01-01"}).json()[
        "error"]["param"] == "expires_at"
    listed = gw.admin.get("/admin/api/topup-codes", params={"q": "spring"}).json()
    assert listed["total"] == 3 and {c["status"] for c in listed["data"]} == {"unused"}
    user = Site(gw)
    assert user.signup().status_code == 302
    assert user.post("/topup", {"code": codes[0]}).status_code == 302
    by_prefix = {c["prefix"]: c for c in gw.admin.get("/admin/api/topup-codes").json()["data"]}
    redeemed = by_prefix[codes[0][:8]]
    assert redeemed["status"] == "redeemed" and redeemed["redeemed_by"] == user.username and redeemed["redeemed_at"]
    r = gw.admin.post(f"/admin/api/topup-codes/{redeemed['id']}/void")
    assert r.status_code == 409
    unused = by_prefix[codes[1][:8]]
    r = gw.admin.post(f"/admin/api/topup-codes/{unused['id']}/void")
    assert r.status_code == 200 and r.json()["status"] == "void"
    assert user.post("/topup", {"code": codes[1]}).status_code == 400  # void: refused like a used code
    assert gw.admin.post("/admin/api/topup-codes/ffffffffffffffffffffffff/void").status_code == 404
    assert gw.admin.get("/admin/api/topup-codes", params={"status": "void"}).json()["total"] == 1
    text = gw.admin.get("/admin/api/topup-codes", params={"format": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3 and {r["status"] for r in rows} == {"redeemed", "void", "unused"}
    assert codes[2] not in text  # only prefixes are kept
    page = admin_site(gw).get("/admin/codes", params={"format": "csv"})
    assert page.headers["content-type"].startswith("text/csv") and "spring promo" in page.text


def test_codes_page_generates_and_voids(gw):
    site = admin_site(gw)
    r = site.post("/admin/codes", {"credits": "0", "count": "2", "note": "x"})
    assert r.status_code == 400 and 'id="f-credits-error"' in r.text
    r = site.post("/admin/codes", {"credits": "2.5", "count": "2", "note": "page batch"})
    assert r.status_code == 200 and r.text.count("CLM-") >= 2
    code_id = gw.admin.get("/admin/api/topup-codes").json()["data"][0]["id"]
    assert site.post("/admin/codes", {"action": "void", "code_id": code_id}).status_code == 302
    assert site.post("/admin/codes", {"action": "void", "code_id": code_id}).status_code == 409


def test_concurrent_double_redemption_credits_once(gw):
    code = gw.admin.post("/admin/api/topup-codes", json={"credits": 7}).json()["codes"][0]
    sites = []
    for _ in range(6):
        s = Site(gw)
        assert s.signup().status_code == 302
        s.xsrf()
        sites.append(s)
    results: list[int] = []
    barrier = threading.Barrier(len(sites))

    def redeem(s):
        barrier.wait()
        results.append(s.post("/topup", {"code": code}).status_code)

    threads = [threading.Thread(target=redeem, args=(s,)) for s in sites]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [302] + [400] * 5
    assert sum(gw.user(s.username)["credits"] for s in sites) == 7


def test_usage_filters_totals_and_csv(gw):
    alice, key_a = gw.user_with_key()
    bob, key_b = gw.user_with_key()
    call(gw, key_a)
    call(gw, key_a, "claude-haiku-4-5")
    call(gw, key_b)
    r = gw.admin.get("/admin/api/usage", params={"username": alice}).json()
    assert len(r["data"]) == 2 and r["totals"]["requests"] == 2 and r["data"][0]["username"] == alice
    r = gw.admin.get("/admin/api/usage", params={"model": "claude-haiku-4-5-20251001"}).json()
    assert len(r["data"]) == 1
    assert gw.admin.get("/admin/api/usage", params={"upstream": "default"}).json()["totals"]["requests"] == 3
    assert gw.admin.get("/admin/api/usage", params={"status": "error"}).json()["totals"]["requests"] == 0
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    assert gw.admin.get("/admin/api/usage", params={"since": today, "until": today}).json()["totals"]["requests"] == 3
    assert gw.admin.get("/admin/api/usage", params={"until": "2001-01-01"}).json()["totals"]["requests"] == 0
    assert gw.admin.get("/admin/api/usage", params={"since": "yesterday"}).json()["error"]["param"] == "since"
    rows = list(csv.DictReader(io.StringIO(gw.admin.get("/admin/api/usage", params={"format": "csv"}).text)))
    assert len(rows) == 3 and {r["username"] for r in rows} == {alice, bob} and rows[0]["upstream"] == "default"
    page = admin_site(gw).get("/admin/usage", params={"username": bob}).text
    assert bob in page and 'id="usage-totals"' in page
    assert admin_site(gw).get("/admin/usage", params={"username": "nobody-here"}).status_code == 400


def test_raw_usage_expires_after_the_retention_and_rollups_stay():
    """The TTL index on raw records (a changed retention replaces it); none on the rollups.
    (A real server gets it at start-up; memory:// skips it, since mongomock would scan the
    collection on every operation.)"""
    from mongomock_motor import AsyncMongoMockClient

    from services.store.db import Database, ensure_indexes, ensure_usage_retention

    async def indexes(days_list):
        db = Database(AsyncMongoMockClient()["retention"])
        await ensure_indexes(db)
        for days in days_list:
            await ensure_usage_retention(db, days)
        return await db.usage.index_information(), await db.usage_daily.index_information()

    import asyncio
    usage, daily = asyncio.run(indexes([30, 7]))
    ttl = [v for v in usage.values() if v.get("key") == [("created_at", 1)]]
    assert len(ttl) == 1 and ttl[0]["expireAfterSeconds"] == 7 * 86400
    assert not any("expireAfterSeconds" in v for v in daily.values())
    usage, _ = asyncio.run(indexes([0]))
    assert not any(v.get("key") == [("created_at", 1)] for v in usage.values())


def test_a_real_server_gets_the_retention_index(gateway_factory, server_database):
    gw = gateway_factory(**server_database, usage_retention_days=7)
    info = gw.run(gw.services.db.usage.index_information())
    assert any(v.get("key") == [("created_at", 1)] for v in info.values())  # FerretDB: a plain index


def test_overview_figures(gw):
    username, key = gw.user_with_key()
    call(gw, key)
    call(gw, key)
    data = gw.admin.get("/admin/api/overview").json()
    assert data["by_day"][-1]["requests"] == 2 and data["top_users"][0]["username"] == username
    assert data["top_models"][0]["model"] == "claude-sonnet-4-20250514"
    up = data["upstreams"][0]
    assert up["upstream"] == "default" and up["requests"] == 2 and up["error_rate"] == 0 and up["p50_ms"] > 0
    assert data["open_streams"] == 0
    page = admin_site(gw).get("/admin").text
    assert 'id="top-users"' in page and username in page and "<svg" in page


def test_signup_settings_open_invite_closed(gw):
    site = admin_site(gw)
    r = site.post("/admin/settings", {"mode": "invite", "credits": "3", "invite_code": "abc"})
    assert r.status_code == 400 and 'id="f-invite_code-error"' in r.text
    assert site.post("/admin/settings", {"mode": "invite", "credits": "3", "invite_code": "let-me-in"}).status_code == 302
    visitor = Site(gw)
    assert "invite code" in visitor.get("/login").text
    r = visitor.signup()
    assert r.status_code == 400 and 'id="f-invite-error"' in r.text
    form = {"username": "invited1", "email": "i@example.com", "password": "password-123",
            "confirm": "password-123", "invite": "let-me-in"}
    assert visitor.post("/signup", form).status_code == 302
    assert gw.user("invited1")["credits"] == 3
    r = gw.admin.put("/admin/api/settings/signup", json={"mode": "closed", "credits": 0})
    assert r.status_code == 200 and r.json()["mode"] == "closed"
    assert gw.admin.put("/admin/api/settings/signup", json={"mode": "shut"}).json()["error"]["param"] == "mode"
    other = Site(gw)
    assert "Sign-up is closed" in other.get("/login").text and "<form" not in other.get("/signup").text.split("auth-card")[1]
    assert other.signup().status_code == 403
    audit = gw.admin.get("/admin/api/audit", params={"action": "settings."}).json()["data"]
    assert len(audit) == 2 and "let-me-in" not in str(audit)
