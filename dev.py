#!/usr/bin/env python3
"""Set-up and entry points that need nothing but Python 3.11+: `python3 dev.py run|test|bench|bench-driver`.

Creates `.venv` on first use, installs the pinned requirements (again only when a
requirements file changed), then runs the gateway, the test suite or the benchmark.

`test` runs two tiers, each with its own pytest summary, and fails if either fails:
  embedded — every test, on the in-process memory:// store;
  server   — every test that uses a database, on a real server: TEST_MONGODB_URI if set,
             else a throwaway FerretDB (or mongod) started by tools/ferretdb.py, which
             builds FerretDB first when only Go is there. Without any, one line says why.
`python3 dev.py test --tier=embedded|server [pytest args]` runs one tier.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def ensure_env(requirements: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"CheapLM needs Python 3.11 or newer (this is {sys.version.split()[0]}).")
    if not PY.exists():
        print("dev: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    files = [ROOT / "requirements.txt", ROOT / requirements]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    stamp = VENV / f".installed-{requirements}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"dev: installing {requirements} (progress below)", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "on",
                    "-r", str(ROOT / requirements)], check=True)
    stamp.write_text(digest)


def pytest(args: list[str], server_uri: str = "") -> int:
    env = {k: v for k, v in os.environ.items() if k != "TEST_MONGODB_URI"}
    if server_uri:
        env["TEST_MONGODB_URI"] = server_uri
    return subprocess.run([str(PY), "-m", "pytest", *args], cwd=ROOT, env=env).returncode


def server_tier(args: list[str]) -> tuple[int, str]:
    """Run the server tier; (exit code, one line saying what ran or why it was skipped)."""
    if uri := os.environ.get("TEST_MONGODB_URI"):
        print(f"dev: server tier on TEST_MONGODB_URI={uri}", flush=True)
        return pytest(args, uri), f"TEST_MONGODB_URI={uri}"
    from tools import ferretdb

    ferretdb.stop_on_sigterm()
    try:
        binary = ferretdb.find_or_build()
        with ferretdb.Server(binary).start() as server:
            print(f"dev: server tier on {binary.kind} ({binary.path}) at {server.uri}", flush=True)
            return pytest(args, server.uri), f"{binary.kind} at {server.uri}"
    except ferretdb.ServerUnavailable as exc:
        return 0, (f"skipped: no TEST_MONGODB_URI, no ferretdb or mongod binary, and {exc} "
                   f"(README: Real-database test tier)")


def test(args: list[str]) -> int:
    tiers = ("embedded", "server")
    if args and args[0].startswith("--tier="):
        tiers, args = (args[0].split("=", 1)[1],), args[1:]
        if tiers[0] not in ("embedded", "server"):
            print("dev: --tier is embedded or server", file=sys.stderr)
            return 2
    results = []
    if "embedded" in tiers:
        print("dev: embedded tier (memory://)", flush=True)
        code = pytest(args)
        results.append(("embedded", code, "memory://"))
    if "server" in tiers:
        code, how = server_tier(args)
        if code == 5:  # pytest: nothing collected; these arguments chose no database test
            code, how = 0, f"{how}: no database test among those selected"
        results.append(("server", code, how))
    for tier, code, how in results:
        outcome = "" if how.startswith("skipped") else "passed — " if code == 0 else f"FAILED (pytest exit {code}) — "
        print(f"dev: {tier} tier {outcome}{how}", flush=True)
    return next((code for _, code, _ in results if code), 0)


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "run":
        ensure_env("requirements.txt")
        os.execv(PY, [str(PY), str(ROOT / "app.py"), *rest])
    if command == "test":
        ensure_env("requirements-dev.txt")
        return test(rest)
    if command in ("bench", "bench-driver"):
        ensure_env("requirements-dev.txt")
        script = "run.py" if command == "bench" else "driver.py"
        return subprocess.run([str(PY), str(ROOT / "bench" / script), *rest], cwd=ROOT).returncode
    print(__doc__.strip().splitlines()[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
