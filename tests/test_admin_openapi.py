"""The management API's OpenAPI document, checked against the running API by schemathesis:
no 5xx, and no status, content type or body the document does not describe."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parent.parent
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_openapi_document_lists_every_admin_route(gateway):
    doc = httpx.get(gateway.url + "/admin/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    routes = {spec for module in ("admin", "admin_models", "admin_ops", "admin_upstreams")
              for spec, _ in __import__(f"handlers.api.{module}", fromlist=["routes"]).routes}
    assert len(doc["paths"]) >= len(routes) - 1  # /admin/api/keys/{id} and the listing share a module
    for path in ("/admin/api/users", "/admin/api/models/{model_id}", "/admin/api/upstreams/{upstream_id}/test",
                 "/admin/api/topup-codes/{code_id}/void", "/admin/api/audit"):
        assert path in doc["paths"]


@pytest.mark.skipif(not (ROOT / ".venv/bin/schemathesis").exists() and not os.environ.get("SCHEMATHESIS"),
                    reason="schemathesis is in requirements-dev.txt")
def test_schemathesis_finds_no_server_error_and_no_schema_violation(gateway):
    gateway.create_user(username="fuzz-target")
    exe = str(ROOT / ".venv/bin/schemathesis") if (ROOT / ".venv/bin/schemathesis").exists() else "schemathesis"
    proc = subprocess.run(
        [exe, "run", gateway.url + "/admin/api/openapi.json", "--url", gateway.url,
         "-H", f"Authorization: Bearer {ADMIN_TOKEN}", "--checks", CHECKS, "--max-examples", "25",
         "--phases", "examples,coverage,fuzzing", "--generation-deterministic", "--request-timeout", "20",
         "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
