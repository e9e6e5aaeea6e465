"""The admin console: access, roles and the last admin, audit records, admin API tokens, and
the user pages' actions (credits, freeze, password, rate limit)."""
from __future__ import annotations

import re

import httpx
import pytest

from tests.test_pages import Site, text_of

ADMIN = "root"
ADMIN_PASSWORD = "root-password-1"


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(admin_username=ADMIN, admin_password=ADMIN_PASSWORD)


def admin_site(gw) -> Site:
    site = Site(gw)
    assert site.login(ADMIN, ADMIN_PASSWORD).status_code == 302
    return site


def test_only_admins_reach_admin_pages(gw):
    """Anonymous → log-in page; a signed-in plain user → 403 page; the admin → the page."""
    anon = Site(gw)
    for path in ("/admin", "/admin/users", "/admin/audit", "/admin/tokens"):
        r = anon.get(path)
        assert r.status_code == 302 and r.headers["location"].startswith("/login?next=")
    user = Site(gw)
    assert user.signup().status_code == 302
    r = user.get("/admin/users")
    assert r.status_code == 403 and "administrators" in r.text
    assert user.post(f"/admin/users/{user.username}", {"action": "credits", "amount": "5",
                                                       "reason": "self"}).status_code == 403
    assert gw.user(user.username)["credits"] == 0
    admin = admin_site(gw)
    r = admin.get("/admin/users")
    assert r.status_code == 200 and user.username in r.text
    assert 'href="/admin"' in admin.get("/dashboard").text and 'href="/admin"' not in user.get("/dashboard").text


def test_admin_adjusts_credits_from_the_user_page_with_a_reason(gw):
    """Credits ± with a required reason land in the ledger and the audit trail."""
    username = gw.create_user(credits=10)
    admin = admin_site(gw)
    r = admin.post(f"/admin/users/{username}", {"action": "credits", "amount": "2.5", "reason": ""})
    assert r.status_code == 400 and 'id="f-reason-error"' in r.text
    r = admin.post(f"/admin/users/{username}", {"action": "credits", "amount": "lots", "reason": "x"})
    assert r.status_code == 400 and 'id="f-amount-error"' in r.text
    r = admin.post(f"/admin/users/{username}", {"action": "credits", "amount": "2.5", "reason": "goodwill"})
    assert r.status_code == 302
    page = admin.get(f"/admin/users/{username}").text
    assert text_of(page, "user-credits") == "12.5" and "goodwill" in page
    audit = gw.admin.get("/admin/api/audit", params={"action": "user.credits"}).json()["data"]
    assert audit[0]["actor"] == ADMIN and audit[0]["target"] == username
    assert audit[0]["before"] == {"credits": "10"} and audit[0]["after"] == {"credits": "12.5", "reason": "goodwill"}


def test_search_sort_and_paginate_users(gw):
    """GET /admin/api/users?q= matches name or email; sort=balance puts the richest first."""
    for name, credits in (("findme-a", 1), ("findme-b", 50), ("other", 7)):
        gw.create_user(credits=credits, username=name)
    r = gw.admin.get("/admin/api/users", params={"q": "FINDME", "sort": "balance"}).json()
    assert r["total"] == 2 and [u["username"] for u in r["data"]] == ["findme-b", "findme-a"]
    r = gw.admin.get("/admin/api/users", params={"sort": "name", "limit": 1, "skip": 1}).json()
    assert len(r["data"]) == 1 and r["total"] == 4
    r = gw.admin.get("/admin/api/users", params={"limit": "many"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
    page = admin_site(gw).get("/admin/users", params={"q": "findme"}).text
    assert "findme-a" in page and "other" not in page


def test_promote_demote_and_the_last_admin(gw):
    """Admins promote and demote; the last admin can be neither demoted by API nor by page."""
    r = gw.admin.patch(f"/admin/api/users/{ADMIN}", json={"role": "user"})
    assert r.status_code == 409 and r.json()["error"]["param"] == "role"
    admin = admin_site(gw)
    r = admin.post(f"/admin/users/{ADMIN}", {"action": "role", "role": "user"})
    assert r.status_code == 409 and "last admin" in r.text
    other = gw.create_user(username="deputy")
    r = gw.admin.patch(f"/admin/api/users/{other}", json={"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    r = gw.admin.patch(f"/admin/api/users/{other}", json={"role": "superuser"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "role"
    assert admin.post(f"/admin/users/{ADMIN}", {"action": "role", "role": "user"}).status_code == 302
    # Now root is a plain user: the console is closed to it.
    assert admin.get("/admin").status_code == 403
    r = gw.admin.patch(f"/admin/api/users/{other}", json={"role": "user"})
    assert r.status_code == 409
    actions = [a["action"] for a in gw.admin.get("/admin/api/audit").json()["data"]]
    assert actions.count("user.role") == 2


def test_freeze_password_and_rate_limit(gw):
    """Freezing stops the user's keys; a new password ends their sessions; a user rpm limits keys."""
    user = Site(gw)
    assert user.signup().status_code == 302
    name = user.username
    key = gw.create_key(name)
    gw.admin.post(f"/admin/api/users/{name}/credits", json={"amount": 10, "reason": "t"})
    admin = admin_site(gw)
    assert admin.post(f"/admin/users/{name}", {"action": "freeze"}).status_code == 302
    body = {"model": "claude-sonnet-4", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    assert httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key}, json=body).status_code == 403
    assert admin.post(f"/admin/users/{name}", {"action": "unfreeze"}).status_code == 302
    assert httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key}, json=body).status_code == 200
    r = admin.post(f"/admin/users/{name}", {"action": "password", "password": "short"})
    assert r.status_code == 400 and 'id="f-password-error"' in r.text
    assert admin.post(f"/admin/users/{name}", {"action": "password", "password": "brand-new-pass-9"}).status_code == 302
    assert user.get("/dashboard").status_code == 302  # session ended
    assert Site(gw).login(name, "brand-new-pass-9").status_code == 302
    r = gw.admin.patch(f"/admin/api/users/{name}", json={"rpm": -1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "rpm"
    assert gw.admin.patch(f"/admin/api/users/{name}", json={"rpm": 1}).json()["rpm"] == 1
    statuses = [httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key}, json=body).status_code
                for _ in range(3)]
    assert 429 in statuses


def test_named_admin_tokens_shown_once_hashed_revocable(gw):
    """A token made on the page opens the API, is stored hashed, records its last use, and
    opens nothing once revoked; every step is audited."""
    admin = admin_site(gw)
    r = admin.post("/admin/tokens", {"name": ""})
    assert r.status_code == 400 and 'id="f-name-error"' in r.text
    r = admin.post("/admin/tokens", {"name": "billing script"})
    token = re.search(r'id="new-token">([^<]+)<', r.text).group(1)
    assert token not in admin.get("/admin/tokens").text
    docs = gw.run(gw.services.db.admin_tokens.find({}).to_list(None))
    assert token not in str(docs) and docs[0]["last_used_at"] is None
    api = httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {token}"})
    assert api.get("/admin/api/users").status_code == 200
    username = gw.create_user(credits=1)
    assert api.post(f"/admin/api/users/{username}/credits", json={"amount": 1, "reason": "via token"}).status_code == 200
    audit = gw.admin.get("/admin/api/audit", params={"actor": "token:billing script"}).json()["data"]
    assert [a["action"] for a in audit] == ["user.credits"]
    listed = gw.admin.get("/admin/api/tokens").json()["data"][0]
    assert listed["last_used_at"] is not None and "token" not in listed
    token_id = listed["id"]
    assert admin.post(f"/admin/tokens/{token_id}/revoke", {}).status_code == 302
    r = api.get("/admin/api/users")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert gw.admin.delete(f"/admin/api/tokens/{token_id}").status_code == 404
    actions = {a["action"] for a in gw.admin.get("/admin/api/audit").json()["data"]}
    assert {"token.create", "token.revoke", "user.create"} <= actions
    assert gw.admin.post("/admin/api/tokens", json={"name": 5}).json()["error"]["param"] == "name"


def test_audit_page_filters(gw):
    gw.create_user(username="audited")
    admin = admin_site(gw)
    page = admin.get("/admin/audit", params={"action": "user."}).text
    assert "user.create" in page and "audited" in page
    assert "user.create" not in admin.get("/admin/audit", params={"actor": "nobody"}).text


def test_one_time_reset_link(gw):
    user = Site(gw)
    assert user.signup().status_code == 302
    admin = admin_site(gw)
    r = admin.post(f"/admin/users/{user.username}", {"action": "reset"})
    link = re.search(r'id="reset-link">([^<]+)<', r.text).group(1)
    path = link.removeprefix(gw.url)
    assert path.startswith("/reset/") and path not in admin.get(f"/admin/users/{user.username}").text
    visitor = Site(gw)
    assert visitor.get(path).status_code == 200
    r = visitor.post(path, {"password": "short", "confirm": "short"})
    assert r.status_code == 400 and 'id="f-password-error"' in r.text
    assert visitor.post(path, {"password": "reset-pass-77", "confirm": "reset-pass-77"}).status_code == 302
    assert visitor.get("/dashboard").status_code == 200
    assert user.get("/dashboard").status_code == 302  # the old session ended
    assert Site(gw).post(path, {"password": "again-pass-77", "confirm": "again-pass-77"}).status_code == 404
    assert Site(gw).login(user.username, "reset-pass-77").status_code == 302
    assert "user.reset_link" in [a["action"] for a in gw.admin.get("/admin/api/audit").json()["data"]]


def test_reset_link_through_the_api(gw):
    username = gw.create_user()
    r = gw.admin.post(f"/admin/api/users/{username}/reset-link")
    assert r.status_code == 201 and "/reset/" in r.json()["url"]
    assert Site(gw).get(r.json()["url"].removeprefix(gw.url)).status_code == 200
    assert gw.admin.post("/admin/api/users/nobody-at-all/reset-link").status_code == 404
