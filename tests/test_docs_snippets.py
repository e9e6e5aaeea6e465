"""Every code snippet on the rendered docs page, run as written against this gateway (with a
real key in place of the placeholder) and the fake upstream: Python with this virtualenv,
curl, and node with the npm SDKs. A snippet that is not a program must be listed as such."""
from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys

import httpx
import pytest

from tests.cli_tools import npm_install, scratch_env

FAKE_TEXT = "Hello from the fake upstream."
FIGURE = re.compile(r'<figure class="code">\s*<figcaption><span>(.*?)</span>.*?<pre><code>(.*?)</code></pre>', re.S)
NOT_PROGRAMS = {
    "Key format", "Required headers", "Request body", "Response", "Image content block", "Request format",
    "Base URL", "Option 1: x-api-key header (recommended for the Anthropic SDK)",
    "Option 2: Authorization Bearer header (recommended for the OpenAI SDK)", "config.yaml", "Install",
    "Missing API key (401)", "Insufficient balance (403)", "Formula", "JSON",
}
"""Fragments (bodies, headers, config files, install lines) that are not run on their own."""
CLI_SNIPPETS = {"Shell", "Shell · ANTHROPIC_AUTH_TOKEN", "Shell · model variables", "config.toml",
                "Shell · Codex", "Shell · aider"}
"""Interactive tools' set-up: Claude Code and Codex CLI run for real in tests/test_cli_*.py."""


def snippets(gw) -> list[tuple[str, str]]:
    page = httpx.get(gw.url + "/docs", headers={"Accept": "text/html"}, timeout=20)
    assert page.status_code == 200
    found = [(html.unescape(label), html.unescape(code)) for label, code in FIGURE.findall(page.text)]
    assert len(found) > 20
    return found


def kind(label: str, code: str) -> str:
    if label.startswith("Python"):
        return "python"
    if label.startswith("TypeScript"):
        return "node"
    if code.lstrip().startswith("curl "):
        return "curl"
    if label in NOT_PROGRAMS or (label == "Shell" and code.startswith("pip install")):
        return "fragment"
    if label in CLI_SNIPPETS:
        return "cli"
    raise AssertionError(f"snippet {label!r} is neither run nor listed as a fragment:\n{code}")


def test_every_snippet_runs_as_written(gateway, tmp_path):
    _, key = gateway.user_with_key()
    found = snippets(gateway)
    kinds = [kind(label, code) for label, code in found]
    assert {"python", "node", "curl"} <= set(kinds)
    assert all(gateway.url in code for (label, code), k in zip(found, kinds) if k in ("python", "node", "curl"))
    node_dir = None
    ran: dict[str, int] = {}
    for n, ((label, code), what) in enumerate(zip(found, kinds)):
        code = code.replace("sk-YOUR_KEY", key)
        env = scratch_env(tmp_path)
        if what == "python":
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
        elif what == "curl":
            if not shutil.which("curl"):
                continue  # counted below: the curl kind must have run unless curl is missing
            done = subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=60, env=env)
        elif what == "node":
            if node_dir is None:
                node_dir = npm_install("openai", "@anthropic-ai/sdk")  # skips without node/npm
            script = node_dir / f"docs_snippet_{n}.mjs"  # beside node_modules, as in a project
            script.write_text(code)
            try:
                done = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60, env=env)
            finally:
                script.unlink()
        else:
            continue
        assert done.returncode == 0, f"{label}:\n{code}\n{done.stdout}\n{done.stderr}"
        expected = FAKE_TEXT
        if what == "curl" and '"stream": true' in code:
            expected = "chat.completion.chunk"
        elif what == "curl" and "/profile" in code:
            expected = '"username"'
        assert expected in done.stdout, f"{label}:\n{code}\n{done.stdout}\n{done.stderr}"
        ran[what] = ran.get(what, 0) + 1
    assert ran.get("python", 0) >= 5 and ran.get("node", 0) >= 2
    if shutil.which("curl"):
        assert ran.get("curl", 0) >= 3
    else:
        pytest.skip("curl is not installed: the curl snippets were not run")
