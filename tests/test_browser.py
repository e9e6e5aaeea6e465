"""End-to-end in headless Chromium (Debian's /usr/bin/chromium driven by Playwright): a newcomer
signs up, creates and copies a key, calls the API, sees the request and the exact charge,
and tops up. Screenshots of every page go to test-artifacts/screenshots/."""
from __future__ import annotations

import os
import re
from pathlib import Path

import anthropic
import httpx
import pytest

from services.core.money import cost_micro, fmt_credits, to_micro

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium; "
                ".ci/run installs it)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SIGNUP_CREDITS = 5


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def site(gateway_factory):
    return gateway_factory(signup_credits=SIGNUP_CREDITS)


class Tab:
    """A browser tab that records console errors and page errors, and takes screenshots."""

    def __init__(self, browser, base_url: str, *, width: int = 1280, height: int = 900) -> None:
        self.context = browser.new_context(base_url=base_url, viewport={"width": width, "height": height},
                                           permissions=["clipboard-read", "clipboard-write"])
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.documents: set[str] = set()
        self.page.on("request", lambda r: self.documents.add(r.url) if r.resource_type == "document" else None)
        self.page.on("console", self.on_console)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def on_console(self, message) -> None:
        # Chromium logs "Failed to load resource" for a page answered 4xx on purpose (the 404
        # page, a form re-shown with 400); the test checks those statuses itself. Any other
        # console error (script, stylesheet, image, CSP violation) fails the test.
        if message.type != "error":
            return
        if message.text.startswith("Failed to load resource") and message.location.get("url") in self.documents:
            return
        self.errors.append(f"console: {message.text} ({message.location.get('url')})")

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], self.errors


def balance(page) -> str:
    return page.locator("#balance").inner_text().strip()


def test_newcomer_signs_up_creates_key_calls_api_and_tops_up(browser, site):
    """Sign up → copy a new key → /v1/messages → request listed, balance down by its exact cost → code → balance up."""
    tab = Tab(browser, site.url)
    page = tab.page
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Claude")
    expect(page.locator("#base-url")).to_have_text(site.url)
    tab.shot("01-home")

    page.get_by_role("link", name="Get API key").first.click()
    expect(page).to_have_url(re.compile(r"/signup"))
    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Email").fill("newcomer@example.com")
    page.get_by_label("Password", exact=True).fill("correct-horse-7")
    page.get_by_label("Repeat the password").fill("correct-horse-7")
    tab.shot("02-signup")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.locator("#balance")).to_have_text(str(SIGNUP_CREDITS))
    tab.shot("03-dashboard-new")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("laptop · claude code")
    page.get_by_role("button", name="Create key").click()
    shown = page.locator("#new-key-value").inner_text().strip()
    assert re.fullmatch(r"sk-[A-Za-z0-9]{64}", shown)
    page.locator("#copy-new-key").click()
    expect(page.locator("#copy-new-key")).to_have_text(re.compile("Copied"))
    key = page.evaluate("navigator.clipboard.readText()")
    assert key == shown
    tab.shot("04-key-created")

    before = to_micro(balance_of(page, "/dashboard"))
    client = anthropic.Anthropic(api_key=key, base_url=site.url, max_retries=0)
    message = client.messages.create(model="claude-sonnet-4", max_tokens=300,
                                     messages=[{"role": "user", "content": "Hello"}])
    model = site.services.catalog.resolve("claude-sonnet-4")
    cost = cost_micro(message.usage.input_tokens + message.usage.output_tokens, model.price_per_1k_micro)
    record = site.usage("newcomer")[0]
    assert record["credits"] == cost

    page.goto("/dashboard")
    assert to_micro(balance(page)) == before - cost
    row = page.locator(f'#usage-table tr[data-request-id="{record["request_id"]}"]')
    expect(row).to_contain_text(model.id)
    expect(row.locator("td.credits")).to_have_text(fmt_credits(cost))
    profile = httpx.get(site.url + "/v1/profile", headers={"x-api-key": key}).json()
    assert balance(page) == fmt_credits(to_micro(profile["credits"]))
    tab.shot("05-dashboard-after-call")

    code = site.admin.post("/admin/api/topup-codes", json={"credits": 20, "note": "browser test"}).json()["codes"][0]
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Top up").click()
    page.get_by_label("Top-up code").fill(code.lower())
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator(".flash")).to_contain_text("Added 20 credits")
    assert to_micro(balance(page)) == before - cost + to_micro(20)
    expect(page.locator("#ledger-table tbody tr")).to_have_count(3)  # signup, usage, top-up
    tab.shot("06-topup")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    page.get_by_role("link", name="Manage laptop · claude code").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("laptop · claude code")
    tab.shot("07-key-manage")
    page.get_by_role("link", name="Revoke this key…").click()
    tab.shot("08-key-revoke-confirm")
    page.get_by_role("button", name="Yes, revoke it").click()
    expect(page.locator(".flash")).to_contain_text("was revoked")
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="claude-sonnet-4", max_tokens=10, messages=[{"role": "user", "content": "x"}])

    page.goto("/account")
    tab.shot("09-account")
    page.goto("/docs")
    expect(page.locator("#quick-start")).to_contain_text(site.url + "/api/v1")
    tab.shot("10-docs-signed-in")
    page.goto("/no-such-page")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    tab.shot("11-not-found")
    page.get_by_role("button", name=re.compile("Log out")).click()
    expect(page.locator(".flash")).to_contain_text("signed out")
    page.goto("/dashboard")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fdashboard"))
    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Password").fill("wrong-password-1")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    tab.shot("12-login-error")
    tab.close()


def balance_of(page, path: str) -> str:
    page.goto(path)
    return balance(page)


def test_phone_width_pages_fit_the_screen(browser, site):
    """At 390 px wide, home, sign-up and dashboard scroll vertically only (no page-wide overflow)."""
    tab = Tab(browser, site.url, width=390, height=844)
    page = tab.page
    page.goto("/")
    tab.shot("20-phone-home")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.goto("/signup")
    page.get_by_label("Username").fill("phoneuser")
    page.get_by_label("Email").fill("phone@example.com")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Repeat the password").fill("short")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#f-password-error")).to_contain_text("at least one letter and one digit")
    tab.shot("21-phone-signup-errors")
    page.get_by_label("Password", exact=True).fill("phone-pass-1")
    page.get_by_label("Repeat the password").fill("phone-pass-1")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("22-phone-dashboard")
    page.goto("/keys")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("23-phone-keys")
    tab.close()


def test_phone_width_keys_and_topup_tables_and_refresh(browser, site):
    """At 390 px, the keys table (with a key, its limits and usage) and the top-up page (with a
    redeemed code in its ledger) fit the screen; refreshing after creating a key shows it no
    more and creates no second key."""
    tab = Tab(browser, site.url, width=390, height=844)
    page = tab.page
    page.goto("/signup")
    page.get_by_label("Username").fill("phonekeys")
    page.get_by_label("Email").fill("phonekeys@example.com")
    page.get_by_label("Password", exact=True).fill("phone-pass-1")
    page.get_by_label("Repeat the password").fill("phone-pass-1")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    page.goto("/keys")
    page.get_by_label("Name").fill("a rather long key name for a phone screen")
    page.get_by_role("button", name="Create key").click()
    expect(page).to_have_url(re.compile(r"/keys$"))  # redirected after the POST
    key = page.locator("#new-key-value").inner_text().strip()
    assert re.fullmatch(r"sk-[A-Za-z0-9]{64}", key)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("24-phone-key-created")
    anthropic.Anthropic(api_key=key, base_url=site.url, max_retries=0).messages.create(
        model="claude-sonnet-4", max_tokens=100, messages=[{"role": "user", "content": "Hello"}])
    page.reload()
    expect(page.locator("#new-key-value")).to_have_count(0)
    assert site.run(site.services.db.api_keys.count_documents({})) == 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.evaluate("document.querySelector('#keys-table').getBoundingClientRect().right") <= 390
    tab.shot("25-phone-keys-table")
    code = site.admin.post("/admin/api/topup-codes", json={"credits": 20, "note": "phone"}).json()["codes"][0]
    page.goto("/topup")
    page.get_by_label("Top-up code").fill(code)
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator(".flash")).to_contain_text("Added 20 credits")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("26-phone-topup")
    tab.close()


def test_keyboard_only_signup(browser, site):
    """The sign-up form can be completed with the keyboard alone, and focus is visibly outlined."""
    tab = Tab(browser, site.url)
    page = tab.page
    page.goto("/signup")
    page.get_by_label("Username").focus()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    page.keyboard.type("keyboarder")
    page.keyboard.press("Tab")
    page.keyboard.type("kb@example.com")
    page.keyboard.press("Tab")
    page.keyboard.type("keyboard-pass-1")
    page.keyboard.press("Tab")
    page.keyboard.type("keyboard-pass-1")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    assert outline != "none"
    tab.close()
