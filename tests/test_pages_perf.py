"""Pages stay fast with a heavy account: 300 keys and 20,000 usage records (with their rollups)."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from services.keys import display_prefix, hash_key, new_key
from tests.test_pages import Site

KEYS, RECORDS = 300, 20_000
# The embedded store (mongomock) copies every document of a collection on each query
# (~12 µs per document), so these budgets are for memory:// on a test machine; with
# MongoDB the same pages are indexed lookups. What they guard against is a page that reads
# every usage record, or one query per key.
BUDGET_SECONDS = {"/dashboard": 1.5, "/dashboard?page=40": 1.5, "/keys": 1.0, "/keys?page=6": 1.0,
                  "/topup": 0.5, "/docs": 0.5}


@pytest.fixture
def heavy(gateway):
    """A signed-in user with KEYS keys and RECORDS usage records over the last 28 days."""
    site = Site(gateway)
    assert site.signup().status_code == 302
    db = gateway.services.db
    uid = gateway.run(gateway.services.users.by_username(site.username))["_id"]
    now = dt.datetime.now(dt.timezone.utc)
    keys = [{"user_id": uid, "name": f"key {i}", "key_hash": hash_key(raw), "prefix": display_prefix(raw),
             "created_at": now - dt.timedelta(days=60, minutes=i), "last_used_at": now, "frozen": False,
             "revoked": False, "credit_cap": None, "cap_left": None, "expires_at": None, "allowed_models": []}
            for i, raw in enumerate(new_key() for _ in range(KEYS))]
    gateway.run(db.api_keys.insert_many(keys))
    models = [m.id for m in gateway.services.catalog.models()]
    records, daily = [], {}
    for i in range(RECORDS):
        key, model = keys[(i * 7) % KEYS], models[i % len(models)]
        created = now - dt.timedelta(seconds=i * 120)
        day = created.strftime("%Y-%m-%d")
        records.append({"request_id": f"req_{i:06d}", "user_id": uid, "key_id": key["_id"],
                        "key_name": key["name"], "model": model, "endpoint": "messages", "stream": i % 2 == 0,
                        "status": 200, "input_tokens": 25, "output_tokens": 150, "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0, "total_tokens": 175, "credits": 22_750, "latency_ms": 12.5,
                        "created_at": created, "day": day})
        roll = daily.setdefault((day, key["_id"], model), {
            "user_id": uid, "day": day, "key_id": key["_id"], "model": model, "requests": 0, "input_tokens": 0,
            "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "total_tokens": 0, "credits": 0, "errors": 0})
        for name, value in (("requests", 1), ("input_tokens", 25), ("output_tokens", 150), ("total_tokens", 175),
                            ("credits", 22_750)):
            roll[name] += value
    gateway.run(db.usage.insert_many(records))
    gateway.run(db.usage_daily.insert_many(list(daily.values())))
    return site


@pytest.mark.parametrize("path", list(BUDGET_SECONDS))
def test_pages_render_within_budget_for_a_heavy_account(heavy, path):
    """With 300 keys and 20,000 records each page renders within its budget and shows one page of rows."""
    heavy.get(path)  # warm the template cache
    started = time.perf_counter()
    r = heavy.get(path)
    elapsed = time.perf_counter() - started
    assert r.status_code == 200
    assert elapsed < BUDGET_SECONDS[path], f"{path} took {elapsed * 1000:.0f} ms"
    if path.startswith("/dashboard"):
        assert r.text.count("data-request-id=") == 25
    if path.startswith("/keys"):
        assert r.text.count('class="button small secondary">Manage') == 50
