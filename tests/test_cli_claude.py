"""Claude Code (npm @anthropic-ai/claude-code 2.1.197) against the gateway exactly as the docs
configure it, and the gateway behaviour it depends on."""
from __future__ import annotations

import subprocess

import anthropic
import pytest

from tests.cli_tools import binary, scratch_env
from tests.fake_upstream import Scenario


def run_claude(gw, tmp_path, prompt: str, **variables: str) -> subprocess.CompletedProcess:
    claude = binary("claude")
    home = tmp_path / "home"
    home.mkdir()
    env = scratch_env(home, ANTHROPIC_BASE_URL=gw.url, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                      DISABLE_TELEMETRY="1", **variables)
    return subprocess.run([claude, "-p", prompt], cwd=home, capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("variable", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"])
def test_claude_print_mode(gateway, tmp_path, variable):
    """`claude -p "hi"` with only the base URL and a key (x-api-key) or token (Bearer):
    Claude Code's default model resolves, the fake's text is printed, the call is billed."""
    user, key = gateway.user_with_key()
    gateway.fake.default = Scenario(text="Hello from CheapLM's fake upstream.")
    done = run_claude(gateway, tmp_path, "hi", **{variable: key})
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "Hello from CheapLM's fake upstream." in done.stdout
    calls = [r for r in gateway.fake.requests if r.path == "/v1/messages"]
    assert calls and calls[0].json["model"].startswith("claude-")
    assert gateway.fake.requests[0].headers.get("x-api-key") == gateway.fake.api_key  # never the user's key
    rows = gateway.usage(user)
    assert rows and all(r["status"] == 200 for r in rows) and len(rows) == len(calls)
    balance, held = gateway.micro_balance(user)
    assert held == 0 and balance < 100 * 1_000_000


def test_upstream_4xx_type_and_message_pass_through(gateway):
    """An upstream 400 reaches an Anthropic client with the upstream's type and message unchanged
    (Claude Code's auto-compact matches "prompt is too long")."""
    _, key = gateway.user_with_key()
    message = "prompt is too long: 212345 tokens > 200000 maximum"
    gateway.fake.enqueue(Scenario(status=400, error_message=message))
    client = anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=100,
                               messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["error"] == {"type": "invalid_request_error", "message": message}
    gateway.fake.enqueue(Scenario(status=413, error_message="Request exceeds the maximum size"))
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=100,
                               messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 413
    assert info.value.body["error"] == {"type": "request_too_large", "message": "Request exceeds the maximum size"}


def test_context_1m_beta_raises_the_input_limit(gateway):
    """Claude Code sends `context-1m-2025-08-07` for its default model: the hold then covers up
    to the model's 1M input limit, not the 200K one (here: a 300K-token estimate, credits for
    200K of it), and the beta reaches the upstream."""
    user = gateway.create_user(credits=30)
    key = gateway.create_key(user)
    client = anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0)
    body = {"model": "claude-sonnet-4-6", "max_tokens": 1, "messages": [{"role": "user", "content": "x" * 600_000}]}
    client.messages.create(**body)  # 200K-token cap: about 26 credits held
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(**body, extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert info.value.status_code == 402  # about 39 credits: more than the balance
    haiku = {**body, "model": "claude-haiku-4-5-20251001"}  # no 1M variant: the beta changes nothing
    client.messages.create(**haiku, extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert gateway.fake.requests[-1].headers["anthropic-beta"] == "context-1m-2025-08-07"
