"""What an operator's load balancer asks: /healthz (the process is up) and /readyz (it can serve)."""
from __future__ import annotations

import httpx


def test_healthz_answers_without_a_key(gateway):
    """/healthz is 200 without authentication and touches nothing."""
    r = httpx.get(gateway.url + "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_checks_database_and_upstream(gateway):
    """/readyz is 200 with both checks ok while the database answers and an upstream is configured."""
    r = httpx.get(gateway.url + "/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "checks": {"database": "ok", "upstream": "ok"}}


def test_readyz_is_503_without_a_usable_upstream(gateway):
    """With every upstream disabled, /readyz is 503 and names the upstream check."""
    db = gateway.services.db
    gateway.run(db.upstreams.update_many({}, {"$set": {"enabled": False}}))
    gateway.run(gateway.services.upstream.reload())
    r = httpx.get(gateway.url + "/readyz")
    assert r.status_code == 503 and r.json()["checks"]["upstream"] != "ok"
    assert r.json()["checks"]["database"] == "ok"
