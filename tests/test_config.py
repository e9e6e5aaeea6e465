"""Configuration: one reader of the environment; bad values stop start-up with one line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.config import ConfigError, Settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults():
    """With nothing set, the gateway runs on port 8000 against the embedded store."""
    s = Settings.from_env({})
    assert (s.port, s.embedded, s.upstream_base_url) == (8000, True, "https://api.anthropic.com")


@pytest.mark.parametrize("env,message", [
    ({"MONGODB_URI": "postgres://x"}, "MONGODB_URI"),
    ({"MONGODB_URI": "mongodb://db:27017"}, "COOKIE_SECRET"),
    ({"PORT": "eighty"}, "PORT must be a int"),
    ({"UPSTREAM_BASE_URL": "ftp://x"}, "UPSTREAM_BASE_URL"),
    ({"ADMIN_USERNAME": "root"}, "ADMIN_PASSWORD"),
    ({"DEBUG": "maybe"}, "DEBUG"),
])
def test_bad_values_raise_config_error(env, message):
    """Values that cannot work raise ConfigError naming the variable."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_bad_config_stops_start_up_with_one_line():
    """`python app.py` with a bad MONGODB_URI exits 2 and prints one explanatory line."""
    proc = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env={"MONGODB_URI": "nonsense", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "MONGODB_URI" in proc.stderr


def test_readme_documents_every_setting():
    """Every Settings field appears in the README's configuration table."""
    readme = (ROOT / "README.md").read_text()
    missing = [Settings.env_name(f) for f in Settings.fields() if f"`{Settings.env_name(f)}`" not in readme]
    assert missing == []


def test_several_processes_need_a_real_database():
    """`python app.py --processes 2` on the embedded store exits 2 with one line saying why."""
    proc = subprocess.run([sys.executable, "app.py", "--processes", "2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "MONGODB_URI" in proc.stderr


def test_start_up_without_a_reachable_database_is_one_line():
    """A MONGODB_URI nobody answers at stops start-up with exit 1 and one line, no traceback."""
    env = {"PATH": "/usr/bin:/bin", "MONGODB_URI": "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300",
           "COOKIE_SECRET": "0123456789abcdef0123"}
    proc = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "cannot reach the database" in proc.stderr
