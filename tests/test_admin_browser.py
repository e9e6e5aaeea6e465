"""The admin console in headless Chromium: log in as the admin, find a user and add credits,
add a model alias and call it through the API, add a second upstream, disable the first and
see calls go to the second; every admin page fits a 390-px phone screen without JS errors.
Screenshots go to test-artifacts/screenshots/ (admin-*.png)."""
from __future__ import annotations

import re

import anthropic
import pytest
from playwright.sync_api import expect  # noqa: E402

from tests.fake_upstream import FakeUpstream
from tests.test_admin_console import ADMIN, ADMIN_PASSWORD
from tests.test_browser import Tab, browser  # noqa: F401  (the module skips without chromium)

PAGES = ("/admin", "/admin/users", "/admin/keys", "/admin/models", "/admin/models/claude-sonnet-4-20250514",
         "/admin/upstreams", "/admin/upstreams/default", "/admin/codes", "/admin/usage", "/admin/settings",
         "/admin/tokens", "/admin/audit")


@pytest.fixture
def site(gateway_factory):
    gw = gateway_factory(admin_username=ADMIN, admin_password=ADMIN_PASSWORD)
    yield gw


def log_in(page) -> None:
    page.goto("/login?next=/admin")
    page.get_by_label("Username").fill(ADMIN)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin$"))


def test_admin_runs_the_business_from_the_browser(browser, site):  # noqa: F811
    username, key = site.user_with_key(credits=3)
    tab = Tab(browser, site.url)
    page = tab.page
    log_in(page)
    tab.shot("admin-01-overview")

    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Users").click()
    page.get_by_label("Name or email contains").fill(username)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=username).click()
    expect(page.locator("#user-credits")).to_have_text("3")
    page.get_by_label("Amount (+ adds, − removes)").fill("12.5")
    page.get_by_label("Reason (goes to the ledger)").fill("support ticket 42")
    page.get_by_role("button", name="Adjust credits").click()
    expect(page.locator(".flash")).to_contain_text("15.5")
    expect(page.locator("#user-credits")).to_have_text("15.5")
    expect(page.locator("#user-ledger")).to_contain_text("support ticket 42")
    tab.shot("admin-02-user-credits")

    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Models").click()
    page.get_by_role("link", name="claude-sonnet-4-20250514").click()
    aliases = page.get_by_label("Aliases (comma-separated)")
    aliases.fill(aliases.input_value() + ", team-sonnet")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text("saved")
    tab.shot("admin-03-model-alias")
    client = anthropic.Anthropic(api_key=key, base_url=site.url, max_retries=0)
    message = client.messages.create(model="team-sonnet", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text
    assert site.usage(username)[0]["model"] == "claude-sonnet-4-20250514"

    second = FakeUpstream(api_key="second-upstream-key")
    second_url = site.run(second.start())
    try:
        page.get_by_role("navigation", name="Admin").get_by_role("link", name="Upstreams").click()
        form = page.locator("#add-upstream")
        form.get_by_label("Name", exact=True).fill("second")
        form.get_by_label("Base URL").fill(second_url)
        form.get_by_label("API key").fill("second-upstream-key")
        form.get_by_label("Priority (lower first)").fill("1")
        page.get_by_role("button", name="Add upstream").click()
        expect(page.locator("#upstreams-table")).to_contain_text("second")
        tab.shot("admin-04-second-upstream")
        page.get_by_role("link", name="default").click()
        page.locator("#f-enabled").uncheck()
        page.get_by_role("button", name="Save").click()
        expect(page.locator('tr[data-upstream="default"]')).to_contain_text("disabled")
        tab.shot("admin-05-first-disabled")
        before = len(site.fake.requests)
        client.messages.create(model="claude-sonnet-4", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
        assert len(second.requests) == 1 and len(site.fake.requests) == before
        page.get_by_role("navigation", name="Admin").get_by_role("link", name="Usage").click()
        page.get_by_label("Upstream").fill("second")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("#usage-table tbody tr")).to_have_count(1)
        tab.shot("admin-06-usage-second")
        page.get_by_role("navigation", name="Admin").get_by_role("link", name="Audit").click()
        expect(page.locator("#audit-table")).to_contain_text("upstream.update")
        tab.shot("admin-07-audit")
    finally:
        site.run(second.stop())
    tab.close()


def test_admin_pages_fit_a_phone_screen(browser, site):  # noqa: F811
    site.user_with_key()
    tab = Tab(browser, site.url, width=390, height=844)
    page = tab.page
    log_in(page)
    for i, path in enumerate(PAGES):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
        tab.shot(f"admin-phone-{i:02d}-{path.strip('/').replace('/', '-') or 'admin'}")
    tab.close()
