"""The real Codex CLI (npm @openai/codex 0.169.0) against the gateway and the fake upstream,
configured as the docs say: a custom provider with wire_api = "responses"."""
from __future__ import annotations

import subprocess

from tests.cli_tools import binary, scratch_env
from tests.fake_upstream import Scenario

MODEL = "claude-sonnet-4-5"


def run_codex(gw, key: str, tmp_path, prompt: str) -> subprocess.CompletedProcess:
    codex = binary("codex")
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(f'''model = "{MODEL}"
model_provider = "cheaplm"

[model_providers.cheaplm]
name = "CheapLM"
base_url = "{gw.url}/v1"
env_key = "CHEAPLM_API_KEY"
wire_api = "responses"
''')
    work = tmp_path / "work"
    work.mkdir()
    return subprocess.run([codex, "exec", "--skip-git-repo-check", prompt], cwd=work, capture_output=True,
                          text=True, timeout=120, env=scratch_env(home, CHEAPLM_API_KEY=key))


def responses_requests(gw) -> list:
    return [r for r in gw.fake.requests if r.path == "/v1/messages"]


def test_codex_exec_answers_a_prompt(gateway, tmp_path):
    """`codex exec "say hi"` prints the fake's text, exits 0, and the call is billed."""
    user, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(text="Hi from the gateway!"))
    done = run_codex(gateway, key, tmp_path, "say hi")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Hi from the gateway!" in done.stdout
    sent = responses_requests(gateway)[0].json
    assert sent["model"] == gateway.services.catalog.resolve(MODEL).upstream_id
    assert sent["system"][0]["text"].startswith("You are")
    assert sent["messages"][-1]["content"][-1]["text"] == "say hi"
    rows = gateway.usage(user)
    assert rows and rows[0]["endpoint"] == "responses" and rows[0]["status"] == 200
    assert gateway.micro_balance(user)[1] == 0


def test_codex_exec_tool_round_trip(gateway, tmp_path):
    """First turn: the fake calls exec_command; Codex runs it and sends the output back; second
    turn: the fake answers text, which Codex prints."""
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(text="", tool_calls=[{"name": "exec_command",
                                                        "input": {"cmd": "echo hello-from-tool"}}]),
                         Scenario(text="The command printed hello-from-tool."))
    done = run_codex(gateway, key, tmp_path, "run echo hello-from-tool")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "The command printed hello-from-tool." in done.stdout
    calls = responses_requests(gateway)
    assert len(calls) == 2
    follow_up = calls[1].json["messages"]
    use = [b for b in follow_up[-2]["content"] if b["type"] == "tool_use"][0]
    result = follow_up[-1]["content"][0]
    assert use["name"] == "exec_command" and use["input"]["cmd"] == "echo hello-from-tool"
    assert result["type"] == "tool_result" and result["tool_use_id"] == use["id"]
    output = result["content"] if isinstance(result["content"], str) else str(result["content"])
    assert "hello-from-tool" in output, output
