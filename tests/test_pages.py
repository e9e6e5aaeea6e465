"""The website over HTTP: docs, sign-up, log-in, keys, dashboard, CSV, account, errors, access control."""
from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
from urllib.parse import urlencode

import httpx
import pytest

from services.core.money import cost_micro, fmt_credits, to_micro

PASSWORD = "password-123"
_names = itertools.count(1)


class Site:
    """A browser-like HTTP client: cookie jar, `Accept: text/html`, XSRF field filled in."""

    def __init__(self, gw) -> None:
        self.gw = gw
        self.http = httpx.Client(base_url=gw.url, headers={"Accept": "text/html"}, follow_redirects=False,
                                 timeout=30)
        self.username: str | None = None

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def xsrf(self) -> str:
        if "_xsrf" not in self.http.cookies:
            self.http.get("/login")
        return self.http.cookies["_xsrf"]

    def post(self, path: str, data: dict | None = None, **kwargs) -> httpx.Response:
        data = {"_xsrf": self.xsrf(), **(data or {})}
        return self.http.post(path, data=data, **kwargs)

    def signup(self, username: str | None = None, *, password: str = PASSWORD, email: str | None = None,
               next: str | None = None) -> httpx.Response:
        username = username or f"web{next_name()}"
        form = {"username": username, "email": email or f"{username}@example.com", "password": password,
                "confirm": password}
        if next is not None:
            form["next"] = next
        r = self.post("/signup", form)
        if r.status_code == 302:
            self.username = username
        return r

    def login(self, username: str, password: str = PASSWORD, **extra) -> httpx.Response:
        return self.post("/login", {"username": username, "password": password, **extra})

    def create_key(self, name: str = "laptop", **limits) -> tuple[str, str]:
        """(full key, key id) of a new key made through the keys page."""
        r = self.post("/keys", {"name": name, **limits})
        assert r.status_code == 303 and r.headers["location"] == "/keys", r.text
        r = self.get("/keys")
        raw = re.search(r'id="new-key-value">(sk-[A-Za-z0-9]+)<', r.text).group(1)
        key_id = re.search(r'id="new-key-manage" href="/keys/([0-9a-f]{24})"', r.text).group(1)
        return raw, key_id


def next_name() -> int:
    return next(_names)


def signed_in(gw, credits: float = 0) -> Site:
    site = Site(gw)
    assert site.signup().status_code == 302
    if credits:
        r = gw.admin.post(f"/admin/api/users/{site.username}/credits", json={"amount": credits, "reason": "test"})
        assert r.status_code == 200, r.text
    return site


def call(gw, key: str, model: str = "claude-sonnet-4") -> httpx.Response:
    r = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                   json={"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": "hi"}]},
                   timeout=30)
    return r


def text_of(html: str, element_id: str) -> str:
    return re.search(rf'id="{element_id}">([^<]*)<', html).group(1)


def inline_error(html: str, field: str) -> str:
    return re.search(rf'id="f-{field}-error">([^<]*)<', html).group(1)


# ---------------------------------------------------------------- home and docs

def test_probes_on_root_get_200_without_html(gateway):
    """HEAD / answers 200 with no body, a non-browser GET / answers JSON: API clients' probes keep working."""
    head = httpx.head(gateway.url + "/")
    assert head.status_code == 200 and head.content == b""
    r = httpx.get(gateway.url + "/")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert httpx.get(gateway.url + "/api/hello").status_code == 200


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_docs_page_uses_this_gateways_url_and_live_prices(gateway, path):
    """The docs show every snippet with this gateway's base URL, the catalog's models and a Get API key link."""
    r = Site(gateway).get(path)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "api.cheaplm.xyz" not in r.text
    assert f'base_url="{gateway.url}/api/v1"' in r.text
    assert f'ANTHROPIC_BASE_URL="{gateway.url}"' in r.text
    for m in gateway.services.catalog.models():
        assert f"<code>{m.id}</code>" in r.text
    assert 'href="/signup">Get API key' in r.text
    for section in ("quick-start", "authentication", "models", "streaming", "ide", "errors", "pricing",
                    "best-practices"):
        assert f'id="{section}"' in r.text
    for tool in ("Cursor", "Continue", "Cline", "Claude Code", "OpenCode", "Roo Code"):
        assert tool in r.text


def test_docs_prices_follow_the_catalog(gateway):
    """Changing a model's price in the catalog changes the docs' price and tokens-per-credit at once."""
    async def reprice():
        await gateway.services.db.models.update_one({"_id": "claude-haiku-3-5-20241022"},
                                                    {"$set": {"cost_per_1k": "0.05"}})
        await gateway.services.catalog.reload()
    gateway.run(reprice())
    html = Site(gateway).get("/docs").text
    row = re.search(r"<code>claude-haiku-3-5-20241022</code>.*?</tr>", html, re.S).group(0)
    assert "0.05 credits" in row and "20,000 tokens" in row


def test_docs_use_public_base_url_setting(gateway_factory):
    """With PUBLIC_BASE_URL set, snippets use it instead of the request's host."""
    gw = gateway_factory(public_base_url="https://llm.example.org/")
    html = Site(gw).get("/docs").text
    assert 'base_url="https://llm.example.org/api/v1"' in html
    assert gw.url not in html


def test_docs_offer_signed_in_users_their_key_prefix(gateway):
    """A signed-in user with a key sees its display prefix as the snippets' key placeholder."""
    site = signed_in(gateway)
    raw, _ = site.create_key()
    html = site.get("/docs").text
    prefix = f"{raw[:7]}…{raw[-4:]}"
    assert f'api_key="{prefix}"' in html and "sk-YOUR_KEY" not in html
    assert raw not in html


# ---------------------------------------------------------------- sign-up

def test_signup_creates_account_signs_in_and_grants_signup_credits(gateway_factory):
    """Sign-up hashes the password, grants SIGNUP_CREDITS via the ledger, sets an HttpOnly SameSite=Lax session."""
    gw = gateway_factory(signup_credits=2.5)
    site = Site(gw)
    r = site.signup("Newbie")
    assert r.status_code == 302 and r.headers["location"] == "/dashboard"
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and "cheaplm_session" in v)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert gw.micro_balance("Newbie") == (to_micro("2.5"), 0)
    doc = gw.run(gw.services.users.by_username("newbie"))
    assert doc["password_hash"].startswith("$argon2") and PASSWORD not in doc["password_hash"]
    ledger = gw.run(gw.services.billing.ledger(doc["_id"]))
    assert [(e["kind"], e["amount"]) for e in ledger] == [("signup", 2_500_000)]
    assert text_of(site.get("/dashboard").text, "balance") == "2.5"


def test_session_cookie_is_secure_over_https(gateway_factory):
    """Behind an https proxy (X-Forwarded-Proto from TRUSTED_PROXIES) the session and XSRF cookies are marked Secure."""
    gateway = gateway_factory(trusted_proxies="127.0.0.1/32")
    site = Site(gateway)
    site.xsrf()
    r = site.post("/signup", {"username": "secureuser", "email": "s@example.com", "password": PASSWORD,
                              "confirm": PASSWORD}, headers={"X-Forwarded-Proto": "https"})
    assert r.status_code == 302
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and "cheaplm_session" in v)
    assert "Secure" in cookie and "HttpOnly" in cookie
    xsrf = httpx.get(gateway.url + "/login", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    assert "Secure" in xsrf and "SameSite=Lax" in xsrf


SIGNUP_BAD = [
    pytest.param({"username": ""}, "username", "Choose a username", id="empty-username"),
    pytest.param({"username": "ab"}, "username", "3–32 characters", id="short-username"),
    pytest.param({"username": "x" * 33}, "username", "3–32 characters", id="long-username"),
    pytest.param({"username": "bad name!"}, "username", "3–32 characters", id="bad-characters"),
    pytest.param({"email": ""}, "email", "Enter your email", id="empty-email"),
    pytest.param({"email": "not-an-email"}, "email", "valid email", id="bad-email"),
    pytest.param({"email": "a@" + "b" * 300 + ".com"}, "email", "valid email", id="long-email"),
    pytest.param({"password": "", "confirm": ""}, "password", "at least one letter and one digit", id="empty-password"),
    pytest.param({"password": "short1", "confirm": "short1"}, "password", "8–128", id="short-password"),
    pytest.param({"password": "a1" * 65, "confirm": "a1" * 65}, "password", "8–128", id="long-password"),
    pytest.param({"password": "lettersonly", "confirm": "lettersonly"}, "password", "one digit", id="no-digit"),
    pytest.param({"confirm": "password-124"}, "confirm", "do not match", id="mismatch"),
]


@pytest.mark.parametrize("change, field, message", SIGNUP_BAD)
def test_signup_rejects_bad_input_inline(gateway, change, field, message):
    """Bad sign-up input re-shows the form with status 400, the typed values and an inline error; no account is made."""
    site = Site(gateway)
    form = {"username": "goodname", "email": "good@example.com", "password": PASSWORD, "confirm": PASSWORD, **change}
    r = site.post("/signup", form)
    assert r.status_code == 400
    assert message in inline_error(r.text, field)
    assert 'aria-invalid="true"' in r.text
    assert PASSWORD not in r.text  # passwords are never echoed back
    if field != "email":
        assert 'value="good@example.com"' in r.text
    assert gateway.run(gateway.services.db.users.count_documents({})) == 0
    assert "cheaplm_session" not in r.headers.get("set-cookie", "")


def test_signup_rejects_duplicate_username_case_insensitively(gateway):
    """A taken username (in any letter case) is refused with 409 and an inline error."""
    assert Site(gateway).signup("Taken").status_code == 302
    r = Site(gateway).signup("tAKEN")
    assert r.status_code == 409
    assert "already taken" in inline_error(r.text, "username")
    assert gateway.run(gateway.services.db.users.count_documents({})) == 1


def test_signup_states_the_password_rules_on_the_form(gateway):
    """The sign-up form states the password rules before anyone gets them wrong."""
    html = Site(gateway).get("/signup").text
    assert "8–128 characters, with at least one letter and one digit" in html
    assert 'for="f-username"' in html and 'for="f-password"' in html and 'autocomplete="new-password"' in html


def test_signup_is_throttled_per_address(gateway):
    """More than ten accounts from one address within the window are refused with 429."""
    for _ in range(10):
        assert Site(gateway).signup().status_code == 302
    r = Site(gateway).signup()
    assert r.status_code == 429 and "Too many accounts" in r.text


# ---------------------------------------------------------------- safe next=

@pytest.mark.parametrize("target", ["//evil.com", "https://evil.com", "/\\evil.com", "\\\\evil.com",
                                    "javascript:alert(1)", "/\t/evil.com", "http:/evil.com", ""])
def test_login_never_redirects_off_site(gateway, target):
    """next= pointing anywhere but a local path is replaced by /dashboard after log-in and sign-up."""
    username = gateway.create_user(0)
    site = Site(gateway)
    r = site.login(username, next=target)
    assert r.status_code == 302 and r.headers["location"] == "/dashboard"
    r = Site(gateway).signup(next=target)
    assert r.status_code == 302 and r.headers["location"] == "/dashboard"


def test_login_follows_a_local_next(gateway):
    """A local next= (as set by the sign-in redirect) is followed after log-in."""
    username = gateway.create_user(0)
    site = Site(gateway)
    r = site.get("/keys?page=2")
    assert r.status_code == 302 and r.headers["location"] == "/login?next=%2Fkeys%3Fpage%3D2"
    assert 'name="next" value="/keys?page=2"' in site.get(r.headers["location"]).text
    r = site.login(username, next="/keys?page=2")
    assert r.headers["location"] == "/keys?page=2"


# ---------------------------------------------------------------- log-in / log-out

@pytest.mark.parametrize("path", ["/dashboard", "/keys", "/topup", "/account", "/dashboard/usage.csv",
                                  "/keys/0123456789abcdef01234567", "/keys/0123456789abcdef01234567/revoke"])
def test_private_pages_redirect_signed_out_visitors_to_login(gateway, path):
    """Every private page sends a signed-out visitor to /login?next=<that page>."""
    r = Site(gateway).get(path)
    assert r.status_code == 302 and r.headers["location"] == "/login?" + urlencode({"next": path})


@pytest.mark.parametrize("path", ["/keys", "/topup", "/account"])
def test_signed_out_form_posts_are_refused_with_a_way_back(gateway, path):
    """A form sent without a session (it expired) is refused with 403 and told to log in again;
    nothing is done."""
    r = Site(gateway).post(path, {"name": "k", "code": "CLM-AAAA-AAAA-AAAA-AAAA", "action": "email"})
    assert r.status_code == 403 and "log in again" in r.text


def test_login_with_wrong_or_missing_credentials_is_refused(gateway):
    """Wrong password, unknown user and empty fields re-show the form (400) without a session."""
    username = gateway.create_user(0)
    site = Site(gateway)
    for form, message in [({"username": username, "password": "wrong-pass-1"}, "Wrong username or password"),
                          ({"username": "nobody-here", "password": PASSWORD}, "Wrong username or password"),
                          ({"username": username, "password": "x" * 5000}, "Wrong username or password"),
                          ({"username": "", "password": ""}, "Enter your username")]:
        r = site.post("/login", form)
        assert r.status_code == 400 and message in r.text
        assert "cheaplm_session" not in r.headers.get("set-cookie", "")
    assert site.get("/dashboard").status_code == 302


def test_login_is_case_insensitive_on_username_and_signs_in(gateway):
    """Log-in accepts the username in any case and opens the dashboard."""
    username = gateway.create_user(0, username="MixedCase")
    site = Site(gateway)
    assert site.login(username.lower()).headers["location"] == "/dashboard"
    assert site.get("/dashboard").status_code == 200


def test_login_is_throttled_per_account(gateway):
    """After five wrong passwords the account refuses even the right one (429, Retry-After); others are unaffected."""
    victim, other = gateway.create_user(0), gateway.create_user(0)
    site = Site(gateway)
    for _ in range(5):
        assert site.login(victim, "wrong-pass-1").status_code == 400
    r = site.login(victim)
    assert r.status_code == 429 and "Too many failed log-ins for this account" in r.text
    assert 0 < int(r.headers["Retry-After"]) <= 900
    assert site.login(other).status_code == 302
    doc = gateway.run(gateway.services.db.login_attempts.find_one({"key": f"account:{victim}"}))
    assert doc["count"] == 5  # kept in MongoDB, shared by every gateway process


def test_login_is_throttled_per_address(gateway):
    """Twenty failed log-ins from one address, over any usernames, block further log-ins from it."""
    username = gateway.create_user(0)
    site = Site(gateway)
    for i in range(20):
        assert site.login(f"guess{i}", "wrong-pass-1").status_code == 400
    r = site.login(username)
    assert r.status_code == 429 and "from your network" in r.text


def test_successful_login_clears_the_account_counter(gateway):
    """A correct password resets the account's failure count, so a later typo does not lock it out early."""
    username = gateway.create_user(0)
    site = Site(gateway)
    for _ in range(4):
        site.login(username, "wrong-pass-1")
    assert site.login(username).status_code == 302
    for _ in range(4):
        assert Site(gateway).login(username, "wrong-pass-1").status_code == 400
    assert Site(gateway).login(username).status_code == 302


def test_logout_needs_a_post_and_ends_the_session(gateway):
    """GET /logout only asks; POST /logout (with XSRF) clears the session and says so."""
    site = signed_in(gateway)
    r = site.get("/logout")
    assert r.status_code == 200 and 'action="/logout"' in r.text
    assert site.get("/dashboard").status_code == 200
    r = site.post("/logout")
    assert r.status_code == 302 and r.headers["location"] == "/"
    assert "You are signed out" in site.get("/", headers={"Accept": "text/html"}).text
    assert site.get("/dashboard").status_code == 302


def test_frozen_user_cannot_log_in_or_keep_a_session(gateway):
    """Freezing a user (admin API) ends their web session and refuses new log-ins."""
    site = signed_in(gateway)
    gateway.admin.patch(f"/admin/api/users/{site.username}", json={"frozen": True})
    assert site.get("/dashboard").status_code == 302
    r = Site(gateway).login(site.username)
    assert r.status_code == 400 and "frozen" in r.text


def test_a_forged_session_cookie_is_ignored(gateway):
    """A session cookie not signed by this gateway (or signed for another password) is treated as signed out."""
    site = signed_in(gateway)
    site.http.cookies.set("cheaplm_session", "forged", domain="127.0.0.1")
    assert site.get("/dashboard").status_code == 302


# ---------------------------------------------------------------- XSRF

FORMS = ["/signup", "/login", "/logout", "/keys", "/keys/{key}", "/keys/{key}/revoke", "/topup", "/account"]


@pytest.mark.parametrize("path", FORMS)
@pytest.mark.parametrize("token", ["missing", "wrong", "other-browser"])
def test_every_form_rejects_a_bad_xsrf_token_with_a_403_page(gateway, path, token):
    """A POST without the right XSRF token gets the site's 403 page and changes nothing."""
    site = signed_in(gateway, credits=1)
    _, key_id = site.create_key("keep me")
    data = {"name": "renamed", "action": "rename", "code": "CLM-AAAA-AAAA-AAAA-AAAA", "username": site.username,
            "password": PASSWORD, "email": "x@example.com"}
    if token == "wrong":
        data["_xsrf"] = "2|deadbeef|" + "0" * 32 + "|1700000000"
    elif token == "other-browser":
        data["_xsrf"] = Site(gateway).xsrf()
    r = site.http.post(path.format(key=key_id), data=data)
    assert r.status_code == 403
    assert "Your form expired or was sent from another site" in r.text
    assert 'class="site-header"' in r.text and "Traceback" not in r.text
    key = gateway.run(gateway.services.keys.get(key_id))
    assert key["name"] == "keep me" and not key["revoked"]
    assert site.get("/dashboard").status_code == 200  # still signed in


# ---------------------------------------------------------------- keys

def test_created_key_is_shown_once_and_works(gateway):
    """Creating a key shows the full key once (no-store) with a copy button; the list shows only its prefix."""
    site = signed_in(gateway, credits=1)
    r = site.post("/keys", {"name": "ci runner"})
    assert r.status_code == 303 and r.headers["location"] == "/keys"  # redirect after POST
    assert "sk-" not in r.headers["location"] and "sk-" not in r.text
    r = site.get("/keys")
    raw = re.search(r'id="new-key-value">(sk-[A-Za-z0-9]{64})<', r.text).group(1)
    assert "no-store" in r.headers["cache-control"]
    assert 'data-copy="#new-key-value"' in r.text and "only time the full key is shown" in r.text
    assert call(gateway, raw).status_code == 200
    listing = site.get("/keys").text  # a refresh: the key is not shown again, and no second key is made
    assert raw not in listing and f"{raw[:7]}…{raw[-4:]}" in listing and "ci runner" in listing
    assert gateway.run(gateway.services.db.api_keys.count_documents({"name": "ci runner"})) == 1
    stored = gateway.run(gateway.services.db.api_keys.find_one({"name": "ci runner"}))
    assert raw not in str(stored)


@pytest.mark.parametrize("form, field, message", [
    pytest.param({"name": ""}, "name", "required", id="empty-name"),
    pytest.param({"name": "   "}, "name", "required", id="blank-name"),
    pytest.param({"name": "n" * 65}, "name", "at most 64", id="long-name"),
    pytest.param({"name": "k", "credit_cap": "lots"}, "credit_cap", "must be a number", id="bad-cap"),
    pytest.param({"name": "k", "credit_cap": "-5"}, "credit_cap", "positive", id="negative-cap"),
    pytest.param({"name": "k", "expires_at": "2020-01-01"}, "expires_at", "future", id="past-expiry"),
    pytest.param({"name": "k", "expires_at": "next week"}, "expires_at", "YYYY-MM-DD", id="bad-expiry"),
    pytest.param({"name": "k", "allowed_models": "gpt-4"}, "allowed_models", "Unknown model", id="unknown-model"),
])
def test_key_creation_rejects_bad_input(gateway, form, field, message):
    """Bad key names and limits re-show the form with 400 and the error; no key is created."""
    site = signed_in(gateway)
    r = site.post("/keys", form)
    assert r.status_code == 400 and message in r.text
    assert gateway.run(gateway.services.db.api_keys.count_documents({})) == 0


def test_key_limits_set_on_the_page_are_enforced(gateway):
    """A key limited to one model with a credit cap and expiry refuses other models and shows its limits."""
    site = signed_in(gateway, credits=5)
    expiry = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    raw, key_id = site.create_key("limited", credit_cap="0.5", expires_at=expiry,
                                  allowed_models="claude-haiku-3-5-20241022")
    assert call(gateway, raw, "claude-haiku-3-5").status_code == 200
    r = call(gateway, raw, "claude-sonnet-4")
    assert r.status_code == 403 and "may only use" in r.json()["error"]["message"]
    page = site.get(f"/keys/{key_id}").text
    assert 'value="0.5"' in page and f'value="{expiry}"' in page
    assert 'value="claude-haiku-3-5-20241022" checked' in page


def test_key_can_be_renamed_frozen_unfrozen_and_revoked(gateway):
    """Rename, freeze (API 403), unfreeze (API 200) and revoke after confirmation (API 401) from the key page."""
    site = signed_in(gateway, credits=5)
    raw, key_id = site.create_key("old name")
    r = site.post(f"/keys/{key_id}", {"action": "rename", "name": "new name"})
    assert r.status_code == 302 and "renamed" in site.get(r.headers["location"]).text
    assert site.post(f"/keys/{key_id}", {"action": "freeze"}).status_code == 302
    assert call(gateway, raw).status_code == 403
    assert "Frozen" in site.get("/keys").text
    site.post(f"/keys/{key_id}", {"action": "unfreeze"})
    assert call(gateway, raw).status_code == 200
    confirm = site.get(f"/keys/{key_id}/revoke")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.text
    assert call(gateway, raw).status_code == 200  # looking at the confirmation changes nothing
    r = site.post(f"/keys/{key_id}/revoke")
    assert r.status_code == 302 and r.headers["location"] == "/keys"
    assert call(gateway, raw).status_code == 401
    assert "new name" not in site.get("/keys").text.split("Your keys")[1]
    assert site.get(f"/keys/{key_id}").status_code == 404


def test_key_rename_rejects_bad_names_and_actions(gateway):
    """An empty or too long new name, or an unknown action, is refused with 400 and the key is unchanged."""
    site = signed_in(gateway)
    _, key_id = site.create_key("stays")
    assert site.post(f"/keys/{key_id}", {"action": "rename", "name": ""}).status_code == 400
    assert site.post(f"/keys/{key_id}", {"action": "rename", "name": "x" * 65}).status_code == 400
    assert site.post(f"/keys/{key_id}", {"action": "explode"}).status_code == 400
    assert gateway.run(gateway.services.keys.get(key_id))["name"] == "stays"


def test_key_list_shows_usage_to_date_and_last_used(gateway):
    """The key list shows each key's requests and credits to date (from the rollups) and when it was last used."""
    site = signed_in(gateway, credits=5)
    raw, _ = site.create_key("busy")
    site.create_key("idle")
    for _ in range(2):
        call(gateway, raw)
    cost = cost_micro(175, gateway.services.catalog.resolve("claude-sonnet-4").price_per_1k_micro)
    html = site.get("/keys").text
    busy = re.search(r">busy</a>.*?</tr>", html, re.S).group(0)
    idle = re.search(r">idle</a>.*?</tr>", html, re.S).group(0)
    assert f">{fmt_credits(2 * cost)}<" in busy and ">2<" in busy and "never" not in busy
    assert ">0<" in idle and "never" in idle


# ---------------------------------------------------------------- access control

def test_user_cannot_see_or_touch_another_users_key(gateway):
    """User B gets 404 for A's key page and every action on it; A's key is unchanged and still works."""
    alice, bob = signed_in(gateway, credits=5), signed_in(gateway)
    raw, key_id = alice.create_key("alice key")
    assert bob.get(f"/keys/{key_id}").status_code == 404
    assert bob.get(f"/keys/{key_id}/revoke").status_code == 404
    for action in ({"action": "rename", "name": "pwned"}, {"action": "freeze"},
                   {"action": "limits", "credit_cap": "0.000001"}):
        r = bob.post(f"/keys/{key_id}", action)
        assert r.status_code == 404 and "No such API key" in r.text
    assert bob.post(f"/keys/{key_id}/revoke").status_code == 404
    key = gateway.run(gateway.services.keys.get(key_id))
    assert key["name"] == "alice key" and not key["frozen"] and not key["revoked"] and key["credit_cap"] is None
    assert call(gateway, raw).status_code == 200
    assert "alice key" not in bob.get("/keys").text


def test_user_cannot_see_another_users_usage(gateway):
    """B's dashboard and CSV, even filtered by A's key id, never include A's requests or key names."""
    alice, bob = signed_in(gateway, credits=5), signed_in(gateway)
    raw, key_id = alice.create_key("alice secret key")
    call(gateway, raw)
    html = bob.get(f"/dashboard?key={key_id}").text
    assert "alice secret key" not in html and 'id="usage-table"' not in html
    rows = list(csv.reader(io.StringIO(bob.get(f"/dashboard/usage.csv?key={key_id}").text)))
    assert len(rows) == 1  # header only
    assert len(list(csv.reader(io.StringIO(bob.get("/dashboard/usage.csv").text)))) == 1
    assert 'id="usage-table"' in alice.get(f"/dashboard?key={key_id}").text


# ---------------------------------------------------------------- dashboard

def test_dashboard_balance_and_usage_agree_with_profile_and_ledger(gateway):
    """After API calls the dashboard balance equals /v1/profile and the ledger exactly, and lists each request."""
    site = signed_in(gateway, credits=3)
    raw, _ = site.create_key()
    for model in ("claude-sonnet-4", "claude-haiku-3-5", "claude-opus-4.6"):
        assert call(gateway, raw, model).status_code == 200
    html = site.get("/dashboard").text
    profile = httpx.get(gateway.url + "/v1/profile", headers={"x-api-key": raw}).json()
    balance, held = gateway.micro_balance(site.username)
    assert text_of(html, "balance") == fmt_credits(balance + held) == fmt_credits(to_micro(profile["credits"]))
    ledger = gateway.run(gateway.services.billing.ledger(
        gateway.run(gateway.services.users.by_username(site.username))["_id"]))
    assert min(e["balance_after"] for e in ledger) == balance + held
    records = gateway.usage(site.username)
    assert sum(r["credits"] for r in records) == to_micro(3) - balance
    for record in records:
        row = re.search(rf'data-request-id="{record["request_id"]}">.*?</tr>', html, re.S).group(0)
        assert record["model"] in row and f">{fmt_credits(record['credits'])}<" in row and ">200<" in row


def test_dashboard_explains_the_balance_in_tokens_per_model(gateway):
    """The dashboard says how many tokens the balance buys for each model, in exact integer arithmetic."""
    site = signed_in(gateway, credits=1.3)
    html = site.get("/dashboard").text
    for m in gateway.services.catalog.models():
        pattern = rf'<code>{re.escape(m.id)}</code></td><td class="num">[^<]*</td><td class="num">≈ ([0-9,]+)'
        row = re.search(pattern, html).group(1)
        assert int(row.replace(",", "")) == to_micro("1.3") * 1000 // m.price_per_1k_micro


def test_dashboard_chart_reads_the_rollups_by_day_and_model(gateway):
    """The 30-day chart is server-rendered SVG with one bar segment per (day, model) and a legend per model."""
    site = signed_in(gateway, credits=5)
    raw, _ = site.create_key()
    call(gateway, raw, "claude-sonnet-4")
    call(gateway, raw, "claude-haiku-3-5")
    html = site.get("/dashboard").text
    svg = re.search(r"<svg viewBox.*?</svg>", html, re.S).group(0)
    assert svg.count("<rect ") == 2
    assert "claude-sonnet-4-20250514" in svg and "claude-haiku-3-5-20241022" in svg
    assert html.count('<ul class="legend">') == 1
    for metric in ("tokens", "requests"):
        assert site.get(f"/dashboard?metric={metric}").status_code == 200
    assert site.get("/dashboard?metric=<script>").status_code == 200


def test_dashboard_filters_and_paginates_requests(gateway):
    """The request table filters by key and model and pages 25 at a time, newest first."""
    site = signed_in(gateway, credits=50)
    raw_a, key_a = site.create_key("key a")
    raw_b, _ = site.create_key("key b")
    for _ in range(27):
        call(gateway, raw_a, "claude-haiku-3-5")
    call(gateway, raw_b, "claude-sonnet-4")
    first = site.get("/dashboard").text
    assert first.count("data-request-id=") == 25 and "Older →" in first and "← Newer" not in first
    second = site.get("/dashboard?page=2").text
    assert second.count("data-request-id=") == 3 and "← Newer" in second and "Older →" not in second
    assert site.get(f"/dashboard?key={key_a}&page=2").text.count("data-request-id=") == 2
    only_sonnet = site.get("/dashboard?model=claude-sonnet-4-20250514").text
    assert only_sonnet.count("data-request-id=") == 1 and "key b" in only_sonnet
    assert "No more requests" in site.get("/dashboard?page=9").text
    assert site.get("/dashboard?page=abc").status_code == 200
    assert site.get("/dashboard?key=not-an-id").status_code == 404


def test_csv_export_has_every_request_with_exact_credits(gateway):
    """The CSV holds one row per request (filters applied) with exact credits and neutralised formula cells."""
    site = signed_in(gateway, credits=5)
    raw, key_id = site.create_key("=HYPERLINK(\"http://evil\")")
    call(gateway, raw, "claude-sonnet-4")
    call(gateway, raw, "claude-haiku-3-5")
    r = site.get("/dashboard/usage.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    records = {rec["request_id"]: rec for rec in gateway.usage(site.username)}
    assert len(rows) == 2
    for row in rows:
        rec = records[row["request_id"]]
        assert row["credits"] == fmt_credits(rec["credits"]) and row["model"] == rec["model"]
        assert row["input_tokens"] == "25" and row["output_tokens"] == "150" and row["total_tokens"] == "175"
        assert row["status"] == "200" and row["created_at"].endswith("Z")
        assert row["key_name"].startswith("'=")
    filtered = list(csv.DictReader(io.StringIO(
        site.get("/dashboard/usage.csv?model=claude-haiku-3-5-20241022").text)))
    assert [row["model"] for row in filtered] == ["claude-haiku-3-5-20241022"]
    assert len(list(csv.DictReader(io.StringIO(site.get(f"/dashboard/usage.csv?key={key_id}").text)))) == 2


# ---------------------------------------------------------------- account

def test_password_change_needs_the_current_password_and_ends_other_sessions(gateway):
    """Changing the password needs the current one; then other sessions are signed out and the new one works."""
    site = signed_in(gateway)
    other = Site(gateway)
    assert other.login(site.username).status_code == 302
    r = site.post("/account", {"action": "password", "current_password": "wrong-pass-9",
                               "new_password": "brand-new-pass-2", "confirm": "brand-new-pass-2"})
    assert r.status_code == 400 and "Current password is wrong" in r.text
    r = site.post("/account", {"action": "password", "current_password": PASSWORD,
                               "new_password": "brand-new-pass-2", "confirm": "brand-new-pass-2"})
    assert r.status_code == 302
    assert site.get("/account").status_code == 200  # this session was re-issued
    assert other.get("/dashboard").status_code == 302  # the other one lapsed
    assert Site(gateway).login(site.username).status_code == 400
    assert Site(gateway).login(site.username, "brand-new-pass-2").status_code == 302


@pytest.mark.parametrize("form, field, message", [
    pytest.param({"new_password": "short1", "confirm": "short1"}, "new_password", "8–128", id="weak"),
    pytest.param({"new_password": "", "confirm": ""}, "new_password", "8–128", id="empty"),
    pytest.param({"new_password": "good-pass-12", "confirm": "good-pass-13"}, "confirm", "do not match", id="mismatch"),
    pytest.param({"current_password": "", "new_password": "good-pass-12", "confirm": "good-pass-12"},
                 "current_password", "wrong", id="no-current"),
])
def test_password_change_rejects_bad_input(gateway, form, field, message):
    """A weak, empty or mismatched new password, or a missing current one, is refused inline and nothing changes."""
    site = signed_in(gateway)
    r = site.post("/account", {"action": "password", "current_password": PASSWORD, **form})
    assert r.status_code == 400 and message in inline_error(r.text, field)
    assert Site(gateway).login(site.username).status_code == 302


def test_guessing_the_current_password_is_throttled(gateway):
    """Wrong current passwords on the account page count as failed log-ins and get locked out too."""
    site = signed_in(gateway)
    form = {"action": "password", "current_password": "guess-pass-1", "new_password": "good-pass-12",
            "confirm": "good-pass-12"}
    for _ in range(5):
        assert site.post("/account", form).status_code == 400
    assert site.post("/account", {**form, "current_password": PASSWORD}).status_code == 429


def test_email_can_be_changed_and_is_validated(gateway):
    """A valid email is saved; an empty, malformed or too long one is refused inline."""
    site = signed_in(gateway)
    assert site.post("/account", {"action": "email", "email": "new@example.org"}).status_code == 302
    assert gateway.run(gateway.services.users.by_username(site.username))["email"] == "new@example.org"
    for bad in ("", "nope", "a@" + "b" * 300 + ".com"):
        r = site.post("/account", {"action": "email", "email": bad})
        assert r.status_code == 400 and "valid email" in inline_error(r.text, "email")
    assert 'value="new@example.org"' in site.get("/account").text


# ---------------------------------------------------------------- errors and headers

def test_unknown_page_gets_the_sites_404(gateway):
    """An unknown path renders the site's 404 page (layout, navigation), not a traceback or JSON."""
    r = Site(gateway).get("/no/such/page")
    assert r.status_code == 404 and "Page not found" in r.text and 'class="site-header"' in r.text
    assert "Traceback" not in r.text


def test_oversized_form_is_refused(gateway):
    """A form body over 64 KB is refused with the site's 413 page."""
    site = Site(gateway)
    r = site.post("/login", {"username": "x" * 70_000, "password": "y"})
    assert r.status_code == 413 and 'class="site-header"' in r.text


def test_pages_send_protective_headers(gateway):
    """Pages forbid framing, sniffing and inline scripts, and private pages are not cached."""
    site = signed_in(gateway)
    r = site.get("/dashboard")
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    assert "<script>" not in r.text  # all script comes from static/site.js
