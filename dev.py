#!/usr/bin/env python3
"""Set-up and entry points that need nothing but Python 3.11+: `python3 dev.py run|test|bench`.

Creates `.venv` on first use, installs the pinned requirements (again only when a
requirements file changed), then runs the gateway, the test suite or the benchmark.
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


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "run":
        ensure_env("requirements.txt")
        os.execv(PY, [str(PY), str(ROOT / "app.py"), *rest])
    if command == "test":
        ensure_env("requirements-dev.txt")
        return subprocess.run([str(PY), "-m", "pytest", *rest], cwd=ROOT).returncode
    if command == "bench":
        ensure_env("requirements-dev.txt")
        return subprocess.run([str(PY), str(ROOT / "bench" / "run.py"), *rest], cwd=ROOT).returncode
    print(__doc__.strip().splitlines()[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
