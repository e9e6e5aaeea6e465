"""The deployment files: compose files valid and complete, every setting in .env.example."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.scale.yml"]


def compose(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_env_example_names_every_setting():
    text = (ROOT / ".env.example").read_text()
    names = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.M))
    assert {Settings.env_name(f) for f in Settings.fields()} <= names


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_services_are_pinned_healthy_and_ordered(name):
    services = compose(name)["services"]
    for service_name, service in services.items():
        image = service.get("image", "")
        assert re.search(r":\d+(\.\d+)+", image), f"{service_name}: image {image!r} not pinned to a version"
        if service.get("restart") != "no":  # one-shot jobs have no health
            assert "healthcheck" in service, service_name
        for dependency in (service.get("depends_on") or {}).values():
            assert dependency["condition"] in ("service_healthy", "service_completed_successfully")
    gateway = services["gateway"]
    assert gateway["env_file"] == ".env"
    assert "authSource=admin" in gateway["environment"]["MONGODB_URI"]
    assert gateway["stop_grace_period"] == "45s"  # more than SHUTDOWN_GRACE_SECONDS
    mongos = [s for s in services.values() if s.get("image", "").startswith("mongo:") and "healthcheck" in s]
    assert mongos and all("MONGO_INITDB_ROOT_PASSWORD" in s["environment"] for s in mongos)


def _compose_cli() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_docker_compose_config_accepts_the_file(name, tmp_path):
    if not _compose_cli():
        pytest.skip("no `docker compose` (the Docker CLI with its compose plugin) on this machine")
    for path in (name, "Dockerfile", "deploy"):
        source = ROOT / path
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / path)
    env = (ROOT / ".env.example").read_text().replace("MONGO_INITDB_ROOT_PASSWORD=", "MONGO_INITDB_ROOT_PASSWORD=x")
    (tmp_path / ".env").write_text(env)
    result = subprocess.run(["docker", "compose", "-f", name, "config", "-q"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
