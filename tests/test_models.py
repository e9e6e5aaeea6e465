"""Model listing, model info, profile, count_tokens and the probes Claude Code sends."""
from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.fake_upstream import Scenario

CURRENT = ["claude-opus-4-8", "claude-opus-4-7", "claude-sonnet-5", "claude-sonnet-4-6", "claude-haiku-4-5-20251001"]
DOCUMENTED = ["claude-opus-4.6", "claude-opus-4.5", "claude-opus-4-20250514", "claude-sonnet-4-5-20250514",
              "claude-sonnet-4-20250514", "claude-haiku-3-5-20241022"]
SEED = CURRENT + DOCUMENTED


def test_models_openai_shape_by_default(gateway):
    """GET /v1/models lists the catalog (current models, then the documented table) in OpenAI's
    list shape (the openai SDK reads it)."""
    _, key = gateway.user_with_key()
    client = openai.OpenAI(api_key=key, base_url=gateway.url + "/api/v1", max_retries=0)
    assert [m.id for m in client.models.list()] == SEED


def test_models_anthropic_shape_with_anthropic_version(gateway):
    """With anthropic-version the same path answers in Anthropic's shape (the anthropic SDK reads it)."""
    _, key = gateway.user_with_key()
    client = anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0)
    models = list(client.models.list())
    assert [m.id for m in models] == SEED and models[0].display_name == "Claude Opus 4.8"


def test_model_info_has_every_catalog_field(gateway):
    """GET /v1/models/info gives limits, price, features and aliases as in the docs table."""
    _, key = gateway.user_with_key()
    r = httpx.get(gateway.url + "/v1/models/info", headers={"x-api-key": key})
    info = {m["id"]: m for m in r.json()["data"]}
    sonnet = info["claude-sonnet-4-20250514"]
    assert (sonnet["max_input_tokens"], sonnet["max_output_tokens"], sonnet["cost_per_1k_tokens"]) == (200_000, 16_000, 0.13)
    assert sonnet["features"] == ["thinking", "vision"] and "claude-sonnet-4" in sonnet["aliases"]
    assert info["claude-haiku-3-5-20241022"]["features"] == ["vision"]
    assert info["claude-opus-4.6"]["cost_per_1k_tokens"] == 0.22


@pytest.mark.parametrize("alias,expected", [
    ("claude-sonnet-4", "claude-sonnet-4-20250514"), ("claude-opus-4-6", "claude-opus-4.6"),
    ("claude-opus-4", "claude-opus-4-20250514"), ("claude-sonnet-4-5", "claude-sonnet-4-5-20250514"),
    ("claude-sonnet-4.5", "claude-sonnet-4-5-20250514"), ("claude-haiku-3-5", "claude-haiku-3-5-20241022"),
    ("claude-3-5-haiku-20241022", "claude-haiku-3-5-20241022"), ("claude-3-5-haiku-latest", "claude-haiku-3-5-20241022"),
    ("CLAUDE-SONNET-4", "claude-sonnet-4-20250514"),
])
def test_aliases_normalise(gateway, alias, expected):
    """Documented aliases resolve to catalog models (GET /v1/models/{alias})."""
    _, key = gateway.user_with_key()
    r = httpx.get(gateway.url + f"/v1/models/{alias}", headers={"x-api-key": key})
    assert r.json()["id"] == expected


def test_alias_added_as_data_works_without_code(gateway):
    """A model added to the catalog collection is served after a reload, with its alias."""
    _, key = gateway.user_with_key()
    db = gateway.services.db
    gateway.run(db.models.insert_one({"_id": "claude-opus-5", "upstream_id": "claude-opus-5", "max_input": 200_000,
                                      "max_output": 64_000, "cost_per_1k": "0.3", "features": ["thinking"],
                                      "aliases": ["opus-latest"], "enabled": True, "order": 9}))
    gateway.run(gateway.services.catalog.reload())
    r = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": key},
                   json={"model": "opus-latest", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200 and gateway.fake.requests[-1].json["model"] == "claude-opus-5"
    assert r.headers["x-cheaplm-credits-used"] == "0.0525"


@pytest.mark.parametrize("sent,expected", [
    ("claude-opus-4-8", "claude-opus-4-8"), ("claude-opus-4-8[1m]", "claude-opus-4-8"),
    ("claude-sonnet-5", "claude-sonnet-5"), ("sonnet[1m]", "claude-sonnet-5"),
    ("claude-sonnet-4-6[1m]", "claude-sonnet-4-6"), ("claude-haiku-4-5-20251001", "claude-haiku-4-5-20251001"),
    ("claude-haiku-4-5", "claude-haiku-4-5-20251001"), ("claude-opus-4-7", "claude-opus-4-7"),
])
def test_claude_code_default_models_resolve(gateway, sent, expected):
    """Every model id Claude Code 2.1 sends by default (main, sonnet, haiku, [1m] variants) is
    served, forwarded upstream under the catalog's upstream id."""
    _, key = gateway.user_with_key()
    r = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": key},
                   json={"model": sent, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200, r.text
    assert gateway.fake.requests[-1].json["model"] == expected


def test_unknown_model_names_the_valid_ids(gateway):
    """An unknown model is a 400 invalid_request_error that lists the valid ids."""
    _, key = gateway.user_with_key()
    r = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": key},
                   json={"model": "gw-custom-model", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "claude-opus-4-8" in r.json()["error"]["message"] and gateway.fake.requests == []


def test_new_seed_models_reach_an_existing_catalog_once(gateway):
    """A database seeded before a model was added gets it at the next start; a seed model an
    admin removed does not come back."""
    catalog, db = gateway.services.catalog, gateway.services.db
    gateway.run(db.models.delete_one({"_id": "claude-sonnet-5"}))
    gateway.run(db.meta.update_one({"_id": "catalog_seed"}, {"$pull": {"ids": "claude-opus-4-7"}}))
    gateway.run(db.models.delete_one({"_id": "claude-opus-4-7"}))
    gateway.run(catalog.seed())
    ids = [m.id for m in catalog.models()]
    assert "claude-opus-4-7" in ids and "claude-sonnet-5" not in ids


def test_profile_documented_shape(gateway):
    """GET /v1/profile answers {username, credits, key_name} on every path a client uses."""
    username, key = gateway.user_with_key(credits=1000.5)
    for path in ("/v1/profile", "/api/v1/profile"):
        r = httpx.get(gateway.url + path, headers={"Authorization": f"Bearer {key}"})
        assert r.json() == {"username": username, "credits": 1000.5, "key_name": "test key"}


def test_count_tokens_forwarded_and_not_billed(gateway):
    """count_tokens (on the SDK's doubled path) returns the upstream's count and costs nothing."""
    username, key = gateway.user_with_key()
    client = anthropic.Anthropic(api_key=key, base_url=gateway.url + "/api/v1", max_retries=0)
    result = client.messages.count_tokens(model="claude-sonnet-4", messages=[{"role": "user", "content": "Hello there"}])
    rec = gateway.fake.requests[-1]
    assert rec.path == "/v1/messages/count_tokens" and rec.json["model"] == "claude-sonnet-4-20250514"
    assert result.input_tokens > 0
    assert gateway.micro_balance(username) == (100_000_000, 0) and gateway.usage(username) == []


def test_count_tokens_failure_is_an_error_not_zero(gateway):
    """If the upstream cannot count, the client gets an error, never {"input_tokens": 0}."""
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(status=500))
    r = httpx.post(gateway.url + "/v1/messages/count_tokens?beta=true", headers={"x-api-key": key},
                   json={"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 502 and r.json()["error"]["type"] == "api_error"


@pytest.mark.parametrize("method,path", [("HEAD", "/"), ("GET", "/"), ("HEAD", "/api/hello"),
                                         ("HEAD", "/api/v1/api/hello")])
def test_probes_answer_200(gateway, method, path):
    """Claude Code's connectivity probes get 200."""
    assert httpx.request(method, gateway.url + path).status_code == 200


def test_cors_preflight_on_api_routes(gateway):
    """Browser clients get CORS preflight answers on API routes."""
    r = httpx.options(gateway.url + "/v1/messages", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key, anthropic-dangerous-direct-browser-access"})
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"
    assert "anthropic-dangerous-direct-browser-access" in r.headers["access-control-allow-headers"]


def test_model_discovery_as_claude_code_does_it(gateway):
    """Claude Code's gateway discovery: GET /v1/models?limit=1000 with anthropic-version and a
    Bearer token → the Anthropic list at once (no redirect), every id starting with claude."""
    _, key = gateway.user_with_key()
    r = httpx.get(gateway.url + "/v1/models?limit=1000", follow_redirects=False, timeout=5,
                  headers={"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [m["id"] for m in body["data"]]
    assert body["has_more"] is False and body["first_id"] == ids[0] and body["last_id"] == ids[-1]
    assert ids and all(i.startswith("claude") for i in ids)
    assert all(m["type"] == "model" and m["display_name"] and m["created_at"] for m in body["data"])
    assert {"claude-opus-4-8", "claude-sonnet-5", "claude-haiku-4-5-20251001"} <= set(ids)
