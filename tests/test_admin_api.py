"""The management API: token-protected, JSON in and out, every change in the ledger."""
from __future__ import annotations

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"x-api-key": ADMIN_TOKEN}],
                         ids=["none", "wrong", "as-api-key"])
def test_admin_api_requires_the_token(gateway, headers):
    """Without the exact bearer token every admin route answers 401."""
    for method, path in [("POST", "/admin/api/users"), ("GET", "/admin/api/users/x"), ("GET", "/admin/api/usage")]:
        r = httpx.request(method, gateway.url + path, headers=headers, json={})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_admin_api_disabled_without_configured_token(gateway_factory):
    """With ADMIN_API_TOKEN unset, no bearer token gets in."""
    gw = gateway_factory(admin_api_token="")
    r = httpx.get(gw.url + "/admin/api/usage", headers={"Authorization": "Bearer x"})
    assert r.status_code == 401


def test_api_key_cannot_reach_admin_routes(gateway):
    """A user's API key is not an admin token."""
    _, key = gateway.user_with_key()
    r = httpx.get(gateway.url + "/admin/api/usage", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401


def test_create_user_and_read_it_back(gateway):
    """POST /admin/api/users creates a user with credits; GET shows credits, keys and status."""
    r = gateway.admin.post("/admin/api/users", json={"username": "alice", "password": "passw0rd!", "email": "a@b.co",
                                                     "credits": 12.5})
    assert r.status_code == 201
    user = gateway.user("alice")
    assert (user["credits"], user["frozen"], user["keys"], user["email"]) == (12.5, False, [], "a@b.co")
    assert "password" not in str(user) and "hash" not in str(user)


@pytest.mark.parametrize("body,status", [
    ({"username": "a", "password": "passw0rd!"}, 400),
    ({"username": "bob", "password": "short"}, 400),
    ({"username": "bob", "password": "passw0rd!", "email": "nope"}, 400),
    ({"username": "bob", "password": "passw0rd!", "credits": "lots"}, 400),
], ids=["short-name", "weak-password", "bad-email", "bad-credits"])
def test_create_user_rejects_bad_input(gateway, body, status):
    """Bad usernames, passwords, emails and amounts are refused with a clear 400."""
    r = gateway.admin.post("/admin/api/users", json=body)
    assert r.status_code == status and r.json()["error"]["message"]


def test_duplicate_username_is_409(gateway):
    """Usernames are unique, case-insensitively."""
    gateway.create_user(username="carol")
    r = gateway.admin.post("/admin/api/users", json={"username": "CAROL", "password": "passw0rd!"})
    assert r.status_code == 409


def test_credits_add_and_remove(gateway):
    """Credits can be added and removed (with a reason); removal below zero is refused."""
    username = gateway.create_user(credits=10)
    r = gateway.admin.post(f"/admin/api/users/{username}/credits", json={"amount": -3.25, "reason": "refund"})
    assert r.json() == {"username": username, "credits": 6.75}
    r = gateway.admin.post(f"/admin/api/users/{username}/credits", json={"amount": -7, "reason": "too much"})
    assert r.status_code == 409 and gateway.user(username)["credits"] == 6.75
    r = gateway.admin.post(f"/admin/api/users/{username}/credits", json={"amount": 1})
    assert r.status_code == 400  # a reason is required


def test_key_shown_once_and_stored_hashed(gateway):
    """The full key is returned once; the database holds only its SHA-256 and a prefix."""
    username = gateway.create_user()
    r = gateway.admin.post(f"/admin/api/users/{username}/keys", json={"name": "ci"})
    key = r.json()["key"]
    assert key.startswith("sk-") and len(key) == 67
    docs = gateway.run(gateway.services.db.api_keys.find({}).to_list(None))
    assert key not in str(docs) and docs[0]["prefix"] == key[:7] + "…" + key[-4:]
    assert "key" not in gateway.user(username)["keys"][0]


def test_usage_listing(gateway):
    """GET /admin/api/usage?username= lists that user's requests with tokens and credits."""
    username, key = gateway.user_with_key()
    httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": key},
               json={"model": "claude-sonnet-4", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    rows = gateway.admin.get("/admin/api/usage", params={"username": username}).json()["data"]
    assert len(rows) == 1 and rows[0]["credits"] == 0.02275 and rows[0]["total_tokens"] == 175
    assert rows[0]["endpoint"] == "messages" and rows[0]["upstream_request_id"].startswith("req_fake")
