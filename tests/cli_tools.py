"""The real command-line clients (Codex CLI, Claude Code), installed once from npm into a
cache directory and run against a LiveGateway in a scratch HOME."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

NPM_DIR = Path(os.environ.get("CHEAPLM_NPM_CACHE", Path.home() / ".cache" / "cheaplm" / "npm"))
PACKAGES = {"codex": "@openai/codex@0.169.0", "claude": "@anthropic-ai/claude-code@2.1.197",
            "openai": "openai@7.59.0", "@anthropic-ai/sdk": "@anthropic-ai/sdk@1.15.0"}
"""Pinned: the versions whose wire behaviour the tests (and the docs) were checked against."""


def npm_install(*names: str) -> Path:
    """Install the named PACKAGES into NPM_DIR (once) and return NPM_DIR; skips the test when
    node/npm are missing or the registry cannot be reached."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed")
    wanted = [PACKAGES[n] for n in names if not (NPM_DIR / "node_modules" / _package(PACKAGES[n])).is_dir()]
    if wanted:
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NPM_DIR), *wanted],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"npm install {' '.join(wanted)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return NPM_DIR


def _package(spec: str) -> str:
    return spec.rsplit("@", 1)[0] if spec.count("@") > (1 if spec.startswith("@") else 0) else spec


def binary(name: str) -> str:
    """The path of an installed package's command (`codex`, `claude`)."""
    path = npm_install(name) / "node_modules" / ".bin" / name
    if not path.exists():
        pytest.skip(f"{name} did not install a command")
    return str(path)


def scratch_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: a scratch HOME, PATH, and `extra`; nothing of the caller's keys."""
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "TERM": "dumb", "NO_COLOR": "1"}
    env.update(extra)
    return env
