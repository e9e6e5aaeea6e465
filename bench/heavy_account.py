"""A heavy account for page tests and the page benchmark: many keys and usage records
(with the rollups the gateway would have written for them), inserted straight into the
store so that building 20,000 records takes a second, not 20,000 API calls."""
from __future__ import annotations

import datetime as dt

from services.accounts.keys import display_prefix, hash_key, new_key

KEYS, RECORDS = 300, 20_000


async def seed(db, user_id, models: list[str], *, keys: int = KEYS, records: int = RECORDS,
               active_keys: int | None = None) -> None:
    """Give the user `keys` keys and `records` records spread over the last 28 days, made
    by every key and model in turn (the worst case for rollups: about one per record), or
    only by the first `active_keys` keys and two models (most keys idle, as in practice)."""
    now = dt.datetime.now(dt.timezone.utc)
    key_docs = [{"user_id": user_id, "name": f"key {i}", "key_hash": hash_key(raw), "prefix": display_prefix(raw),
                 "created_at": now - dt.timedelta(days=60, minutes=i), "last_used_at": now, "frozen": False,
                 "revoked": False, "credit_cap": None, "cap_left": None, "expires_at": None, "allowed_models": []}
                for i, raw in enumerate(new_key() for _ in range(keys))]
    await db.api_keys.insert_many(key_docs)
    rows, daily = [], {}
    for i in range(records):
        if active_keys:
            key, model = key_docs[(i * 7) % active_keys], models[i % 2]
        else:
            key, model = key_docs[(i * 7) % keys], models[i % len(models)]
        created = now - dt.timedelta(seconds=i * 120)
        day = created.strftime("%Y-%m-%d")
        rows.append({"request_id": f"req_{i:06d}", "user_id": user_id, "key_id": key["_id"],
                     "key_name": key["name"], "model": model, "endpoint": "messages", "stream": i % 2 == 0,
                     "status": 200, "input_tokens": 25, "output_tokens": 150, "cache_creation_input_tokens": 0,
                     "cache_read_input_tokens": 0, "total_tokens": 175, "credits": 22_750, "latency_ms": 12.5,
                     "created_at": created, "day": day})
        group = {"user_id": user_id, "day": day, "key_id": key["_id"], "model": model}
        roll = daily.setdefault((day, key["_id"], model), {
            "_id": "{user_id}:{day}:{key_id}:{model}".format(**group), **group, "requests": 0,
            "input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "total_tokens": 0, "credits": 0, "errors": 0})
        for name, value in (("requests", 1), ("input_tokens", 25), ("output_tokens", 150), ("total_tokens", 175),
                            ("credits", 22_750)):
            roll[name] += value
    await db.usage.insert_many(rows)
    await db.usage_daily.insert_many(list(daily.values()))
