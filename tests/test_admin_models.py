"""Models and prices from the admin console: the API and pages, validation naming the field,
split-rate billing exact to the micro-credit, and price changes applied without a restart."""
from __future__ import annotations

import time

import httpx
import pytest

from tests.fake_upstream import Scenario
from tests.test_admin_console import ADMIN, ADMIN_PASSWORD, admin_site

RATES = {"input": "0.003", "output": "0.015", "cache_write_5m": "0.00375", "cache_write_1h": "0.006",
         "cache_read": "0.0003"}
NEW_MODEL = {"id": "split-model", "upstream_model": "claude-sonnet-4-6", "aliases": ["splitty"],
             "max_input": 200_000, "max_output": 8_000, "price_per_1k": "0.13", "rates": RATES,
             "features": ["vision"], "enabled": True}
USAGE = {"input_tokens": 1000, "output_tokens": 2000, "cache_creation_input_tokens": 3000,
         "cache_read_input_tokens": 10_001,
         "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000}}
# 1000×3000 + 2000×15000 + 1000×3750 + 2000×6000 + 10001×300 = 51,750,300 µcr·1K → 51,750.3 → 51,751
EXPECTED_MICRO = 51_751


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(admin_username=ADMIN, admin_password=ADMIN_PASSWORD)


def call(gw, key: str, model: str, *, stream: bool = False) -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key}, timeout=30,
                      json={"model": model, "max_tokens": 100, "stream": stream,
                            "messages": [{"role": "user", "content": "hi"}]})


@pytest.mark.parametrize("body,param", [
    ({**NEW_MODEL, "price_per_1k": "cheap"}, "price_per_1k"),
    ({**NEW_MODEL, "price_per_1k": -1}, "price_per_1k"),
    ({**NEW_MODEL, "max_input": 0}, "max_input"),
    ({**NEW_MODEL, "max_output": "lots"}, "max_output"),
    ({**NEW_MODEL, "id": "bad id!"}, "id"),
    ({k: v for k, v in NEW_MODEL.items() if k != "id"}, "id"),
    ({**NEW_MODEL, "aliases": "splitty"}, "aliases"),
    ({**NEW_MODEL, "rates": {k: v for k, v in RATES.items() if k != "cache_read"}}, "rates.cache_read"),
    ({**NEW_MODEL, "rates": {**RATES, "input": "x"}}, "rates.input"),
    ({**NEW_MODEL, "rates": {**RATES, "bonus": 1}}, "rates.bonus"),
    ({**NEW_MODEL, "features": "vision"}, "features"),
    ({**NEW_MODEL, "enabled": "yes"}, "enabled"),
    ({**NEW_MODEL, "colour": "red"}, "colour"),
])
def test_bad_model_input_is_a_400_naming_the_field(gw, body, param):
    r = gw.admin.post("/admin/api/models", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["type"] == "error"
    assert gw.admin.get("/admin/api/models/split-model").status_code == 404


def test_model_crud_and_refusals(gw):
    assert httpx.get(gw.url + "/admin/api/models").status_code == 401
    r = gw.admin.post("/admin/api/models", json=NEW_MODEL)
    assert r.status_code == 201, r.text
    assert r.json()["rates"] == RATES and r.json()["price_rule"].startswith("input 0.003")
    assert gw.admin.post("/admin/api/models", json=NEW_MODEL).status_code == 409
    r = gw.admin.post("/admin/api/models", json={**NEW_MODEL, "id": "other", "aliases": ["sonnet"]})
    assert r.status_code == 409 and r.json()["error"]["param"] == "aliases"
    r = gw.admin.patch("/admin/api/models/split-model", json={"id": "renamed"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "id"
    r = gw.admin.patch("/admin/api/models/split-model", json={"rates": None, "enabled": False})
    assert r.status_code == 200 and r.json()["rates"] is None and r.json()["price_rule"] == "0.13 per 1K tokens"
    ids = [m["id"] for m in gw.admin.get("/admin/api/models").json()["data"]]
    assert "split-model" in ids  # listed although disabled
    _, key = gw.user_with_key()
    assert call(gw, key, "split-model").status_code == 400  # disabled: unknown to callers
    assert gw.admin.delete("/admin/api/models/split-model").status_code == 200
    assert gw.admin.delete("/admin/api/models/split-model").status_code == 404
    audit = [a["action"] for a in gw.admin.get("/admin/api/audit", params={"action": "model."}).json()["data"]]
    assert audit == ["model.delete", "model.update", "model.create"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_split_rates_bill_exactly_with_cache_reads_and_both_write_lifetimes(gw, stream):
    assert gw.admin.post("/admin/api/models", json=NEW_MODEL).status_code == 201
    username, key = gw.user_with_key(credits=10)
    gw.fake.enqueue(Scenario(usage=USAGE))
    before = sum(gw.micro_balance(username))
    r = call(gw, key, "splitty", stream=stream)
    assert r.status_code == 200, r.text
    assert before - sum(gw.micro_balance(username)) == EXPECTED_MICRO
    row = gw.usage(username)[0]
    assert row["credits"] == EXPECTED_MICRO and row["model"] == "split-model"
    assert (row["cache_creation_5m_input_tokens"], row["cache_creation_1h_input_tokens"]) == (1000, 2000)
    assert row["total_tokens"] == 16_001


def test_cache_writes_without_a_breakdown_count_as_five_minute_writes(gw):
    assert gw.admin.post("/admin/api/models", json=NEW_MODEL).status_code == 201
    username, key = gw.user_with_key(credits=10)
    gw.fake.enqueue(Scenario(usage={"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 1000}))
    before = sum(gw.micro_balance(username))
    assert call(gw, key, "split-model").status_code == 200
    assert before - sum(gw.micro_balance(username)) == 3750


def test_price_change_applies_to_the_next_request_without_restart(gw):
    username, key = gw.user_with_key(credits=10)
    assert call(gw, key, "claude-sonnet-4").json()  # 175 tokens at 0.13
    assert gw.usage(username)[0]["credits"] == 22_750
    r = gw.admin.patch("/admin/api/models/claude-sonnet-4-20250514", json={"price_per_1k": "0.2"})
    assert r.status_code == 200
    call(gw, key, "claude-sonnet-4")
    assert gw.usage(username)[0]["credits"] == 35_000
    info = {m["id"]: m for m in httpx.get(gw.url + "/v1/models/info", headers={"x-api-key": key}).json()["data"]}
    assert info["claude-sonnet-4-20250514"]["cost_per_1k_tokens"] == 0.2


def test_a_price_change_reaches_another_process(gateway_factory, server_database):
    """Two gateways on one database: an edit through the first is charged by the second
    once its catalog refresh ran (no restart)."""
    first = gateway_factory(**server_database)
    second = gateway_factory(**server_database, catalog_refresh_seconds=0.2)
    username, key = first.user_with_key(credits=10)
    assert first.admin.patch("/admin/api/models/claude-sonnet-4-20250514", json={"price_per_1k": "0.2"}).status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = httpx.get(second.url + "/v1/models/info", headers={"x-api-key": key}).json()["data"]
        if {m["id"]: m for m in info}["claude-sonnet-4-20250514"]["cost_per_1k_tokens"] == 0.2:
            break
        time.sleep(0.1)
    call(second, key, "claude-sonnet-4")
    assert second.usage(username)[0]["credits"] == 35_000


def test_docs_dashboard_and_models_info_show_the_rule_in_force(gw):
    assert gw.admin.post("/admin/api/models", json=NEW_MODEL).status_code == 201
    _, key = gw.user_with_key()
    info = {m["id"]: m for m in httpx.get(gw.url + "/v1/models/info", headers={"x-api-key": key}).json()["data"]}
    assert info["split-model"]["rates"] == {k: float(v) for k, v in RATES.items()}
    assert info["claude-sonnet-4-20250514"]["rates"] is None
    assert info["claude-sonnet-4-20250514"]["price_rule"] == "0.13 per 1K tokens"
    docs = httpx.get(gw.url + "/docs").text
    assert "input 0.003 · output 0.015 · cache write 0.00375 (5 min) / 0.006 (1 h) · cache read 0.0003" in docs
    assert 'id="split-rates-note"' in docs
    site = admin_site(gw)
    assert "cache read 0.0003" in site.get("/dashboard").text


def test_models_pages_add_edit_with_inline_errors_and_an_alias_callers_can_use(gw):
    site = admin_site(gw)
    form = {"id": "page-model", "upstream_model": "claude-haiku-4-5", "aliases": "pm, page-alias",
            "max_input": "100000", "max_output": "4000", "price_per_1k": "nope", "features": "vision",
            "enabled": "on"}
    r = site.post("/admin/models", form)
    assert r.status_code == 400 and 'id="f-price_per_1k-error"' in r.text
    r = site.post("/admin/models", {**form, "price_per_1k": "0.05"})
    assert r.status_code == 302
    _, key = gw.user_with_key()
    assert call(gw, key, "page-alias").status_code == 200
    assert gw.fake.requests[-1].json["model"] == "claude-haiku-4-5"
    r = site.post("/admin/models/page-model", {**form, "price_per_1k": "0.05", "split": "on",
                                               **{f"rate_{k}": v for k, v in RATES.items()}, "rate_output": ""})
    assert r.status_code == 400 and 'id="f-rate_output-error"' in r.text
    r = site.post("/admin/models/page-model", {**form, "price_per_1k": "0.07", "aliases": "pm, page-alias, third"})
    assert r.status_code == 302
    page = site.get("/admin/models").text
    assert "third" in page and "0.07 per 1K tokens" in page
    assert call(gw, key, "third").status_code == 200
