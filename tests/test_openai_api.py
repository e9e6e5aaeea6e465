"""OpenAI Chat Completions and the Cursor route, through the official openai SDK and the fake upstream."""
from __future__ import annotations

import base64
import json
import time

import httpx
import openai
import pytest

from tests.fake_upstream import Scenario

HELLO = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


def client(gw, key, base="/api/v1") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gw.url + base, max_retries=0, timeout=20)


def test_plain_completion(gateway):
    """A non-streamed completion returns the upstream text, the normalised model and OpenAI usage."""
    _, key = gateway.user_with_key()
    r = client(gateway, key).chat.completions.create(model="claude-sonnet-4", messages=[
        {"role": "system", "content": "Be brief."}, *HELLO])
    assert r.choices[0].message.content == "Hello from the fake upstream."
    assert r.choices[0].finish_reason == "stop" and r.model == "claude-sonnet-4-20250514"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (25, 150, 175)
    sent = gateway.fake.requests[-1].json
    assert sent["system"] == [{"type": "text", "text": "Be brief."}] and sent["max_tokens"] == 16000


def test_streamed_completion_with_usage_chunk(gateway):
    """A stream yields role, text deltas, finish_reason, then a usage chunk with no choices, then [DONE]."""
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(text="a b c", chunks=3))
    chunks = list(client(gateway, key).chat.completions.create(
        model="claude-sonnet-4", messages=HELLO, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 175


def test_stream_ends_with_done_and_chunks_arrive_as_generated(gateway):
    """Raw SSE: only data lines, chunk.object set, and `data: [DONE]` last."""
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(chunks=3, delay=0.4))
    started = time.monotonic()
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "claude-sonnet-4", "messages": HELLO, "stream": True}, timeout=20) as r:
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    assert time.monotonic() - started > 1.0
    assert json.loads(lines[0][6:])["object"] == "chat.completion.chunk"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_tool_calling_round_trip(gateway, stream):
    """assistant tool_calls → tool results → final answer works in both modes, ids and arguments intact."""
    _, key = gateway.user_with_key()
    c = client(gateway, key)
    gateway.fake.enqueue(Scenario(text="Checking.", tool_calls=[{"name": "get_weather", "input": {"city": "Paris"}},
                                                                 {"name": "get_weather", "input": {"city": "Rome"}}]))
    messages = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    if stream:
        calls: dict[int, dict] = {}
        finish = None
        for chunk in c.chat.completions.create(model="claude-sonnet-4", messages=messages, tools=[WEATHER_TOOL],
                                               stream=True):
            choice = chunk.choices[0]
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                slot["id"] = tc.id or slot["id"]
                slot["name"] = (tc.function.name if tc.function else None) or slot["name"]
                slot["arguments"] += (tc.function.arguments or "") if tc.function else ""
        tool_calls = [{"id": v["id"], "type": "function", "function": {"name": v["name"], "arguments": v["arguments"]}}
                      for _, v in sorted(calls.items())]
    else:
        r = c.chat.completions.create(model="claude-sonnet-4", messages=messages, tools=[WEATHER_TOOL])
        finish = r.choices[0].finish_reason
        tool_calls = [tc.model_dump() for tc in r.choices[0].message.tool_calls]
    assert finish == "tool_calls" and len(tool_calls) == 2
    assert [json.loads(t["function"]["arguments"]) for t in tool_calls] == [{"city": "Paris"}, {"city": "Rome"}]
    sent_tools = gateway.fake.requests[-1].json["tools"]
    assert sent_tools[0]["name"] == "get_weather" and sent_tools[0]["input_schema"]["required"] == ["city"]

    messages += [{"role": "assistant", "content": "Checking.", "tool_calls": tool_calls},
                 {"role": "tool", "tool_call_id": tool_calls[0]["id"], "content": "18C sunny"},
                 {"role": "tool", "tool_call_id": tool_calls[1]["id"], "content": "22C clear"}]
    gateway.fake.enqueue(Scenario(text="Paris 18C, Rome 22C."))
    final = c.chat.completions.create(model="claude-sonnet-4", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "Paris 18C, Rome 22C." and final.choices[0].finish_reason == "stop"
    sent = gateway.fake.requests[-1].json["messages"]
    assert [b["type"] for b in sent[1]["content"]] == ["text", "tool_use", "tool_use"]
    assert [(b["type"], b["tool_use_id"]) for b in sent[2]["content"]] == [
        ("tool_result", tool_calls[0]["id"]), ("tool_result", tool_calls[1]["id"])]


def test_image_data_url_becomes_base64_image_block(gateway):
    """An image_url data URL is sent upstream as a base64 image block."""
    _, key = gateway.user_with_key()
    client(gateway, key).chat.completions.create(model="claude-sonnet-4", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])
    block = gateway.fake.requests[-1].json["messages"][0]["content"][1]
    assert block == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


def test_reasoning_effort_enables_thinking_and_returns_reasoning_content(gateway):
    """reasoning_effort turns on thinking with a budget below max_tokens; thinking text comes back."""
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(thinking="Let me think.", text="42"))
    r = client(gateway, key).chat.completions.create(model="claude-sonnet-4", messages=HELLO, max_tokens=1000,
                                                     reasoning_effort="medium")
    sent = gateway.fake.requests[-1].json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048} and sent["max_tokens"] > 2048
    assert r.choices[0].message.content == "42"
    assert r.choices[0].message.model_extra["reasoning_content"] == "Let me think."


def test_response_format_json_schema(gateway):
    """response_format json_schema comes back as JSON content with finish_reason stop."""
    _, key = gateway.user_with_key()
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    gateway.fake.enqueue(Scenario(text="", tool_calls=[{"name": "json_tool_call", "input": {"answer": 42}}]))
    r = client(gateway, key).chat.completions.create(
        model="claude-sonnet-4", messages=HELLO,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    assert json.loads(r.choices[0].message.content) == {"answer": 42}
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.tool_calls is None
    assert gateway.fake.requests[-1].json["tool_choice"] == {"type": "tool", "name": "json_tool_call"}


def test_stop_and_dropped_params_header(gateway):
    """stop becomes stop_sequences; parameters Claude lacks are dropped and named in a header."""
    _, key = gateway.user_with_key()
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model="claude-sonnet-4", messages=HELLO, stop=["END"], seed=7, logit_bias={"1": 2}, temperature=1.6)
    sent = gateway.fake.requests[-1].json
    assert sent["stop_sequences"] == ["END"] and sent["temperature"] == 1
    assert "seed" not in sent and "logit_bias" in raw.headers["x-cheaplm-dropped-params"]


@pytest.mark.parametrize("setup,exc", [
    ("no-key", openai.AuthenticationError),
    ("frozen", openai.PermissionDeniedError),
    ("bad-model", openai.BadRequestError),
    ("n2", openai.BadRequestError),
    ("low-balance", openai.APIStatusError),
    ("upstream-429", openai.RateLimitError),
    ("upstream-500", openai.InternalServerError),
], ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_errors_raise_the_expected_sdk_exceptions(gateway, setup, exc):
    """Each documented error status reaches the SDK as the matching exception, with message and type."""
    username, key = gateway.user_with_key(credits=0.2 if setup == "low-balance" else 100)
    kwargs = {"model": "claude-sonnet-4", "messages": HELLO}
    if setup == "no-key":
        key = "sk-wrong"
    elif setup == "frozen":
        gateway.admin.patch(f"/admin/api/users/{username}", json={"frozen": True})
    elif setup == "bad-model":
        kwargs["model"] = "gpt-4o"
    elif setup == "n2":
        kwargs["n"] = 2
    elif setup.startswith("upstream"):
        gateway.fake.enqueue(Scenario(status=int(setup.split("-")[1])))
    with pytest.raises(exc) as info:
        client(gateway, key).chat.completions.create(**kwargs)
    err = info.value
    assert err.body["message"] and err.body["type"] and "param" in err.body and "code" in err.body
    if setup == "low-balance":
        assert err.status_code == 402 and err.body["type"] == "insufficient_credits"
    assert gateway.micro_balance(username)[1] == 0


def test_error_mid_stream_is_an_error_chunk_without_done(gateway):
    """An upstream error after the stream started becomes a data: {"error": …} chunk and no [DONE]."""
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(chunks=5, error_after=2))
    with pytest.raises(openai.APIError, match="Overloaded"):
        for _ in client(gateway, key).chat.completions.create(model="claude-sonnet-4", messages=HELLO, stream=True):
            pass
    r = httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "claude-sonnet-4", "stream": True,
                         "messages": [{"role": "user", "content": "[[scenario: chunks=5 error_after=2]]"}]})
    assert '"error"' in r.text and "[DONE]" not in r.text


def test_chat_billing_matches_the_anthropic_path(gateway):
    """Chat completions are billed from the upstream's counters, cache included, endpoint recorded."""
    username, key = gateway.user_with_key(credits=10)
    usage = {"input_tokens": 100, "output_tokens": 50, "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 2000}
    gateway.fake.enqueue(Scenario(usage=usage), Scenario(usage=usage))
    r = client(gateway, key).chat.completions.create(model="claude-sonnet-4", messages=HELLO)
    assert (r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens) == (3100, 2000)
    list(client(gateway, key).chat.completions.create(model="claude-sonnet-4", messages=HELLO, stream=True))
    rows = gateway.usage(username)
    assert [(row["endpoint"], row["stream"], row["credits"]) for row in rows] == [
        ("chat", True, 409_500), ("chat", False, 409_500)]
    assert gateway.micro_balance(username) == (10_000_000 - 819_000, 0)


def test_chat_disconnect_cancels_upstream(gateway):
    """Hanging up a chat stream stops the upstream and bills what was produced."""
    username, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(chunks=200, delay=0.05))
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "claude-sonnet-4", "messages": HELLO, "stream": True}, timeout=20) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i == 8:
                break
    rec = gateway.fake.requests[-1]
    deadline = time.monotonic() + 5
    while not rec.disconnected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rec.disconnected and rec.events_sent < 100
    deadline = time.monotonic() + 5
    while not gateway.usage(username) and time.monotonic() < deadline:
        time.sleep(0.02)
    row = gateway.usage(username)[0]
    assert row["status"] == 499 and row["input_tokens"] == 25 and 1 <= row["output_tokens"] < 150


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/chat/completions", "/chat/completions",
                                  "/cursor/v1/chat/completions"])
def test_chat_served_on_every_documented_path(gateway, path):
    """Every base URL a client may configure reaches the chat endpoint."""
    _, key = gateway.user_with_key()
    r = httpx.post(gateway.url + path, headers={"Authorization": f"Bearer {key}"},
                   json={"model": "claude-sonnet-4", "messages": HELLO})
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"


def test_cursor_responses_shaped_body_and_model_names(gateway):
    """The Cursor route converts a Responses-API body and resolves Cursor model names (-thinking enables it)."""
    _, key = gateway.user_with_key()
    body = {"model": "claude-4-sonnet-thinking", "instructions": "You are a coding agent.",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Fix the bug"}]}],
            "tools": [{"type": "function", "name": "read_file", "description": "Read a file",
                       "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}],
            "store": False, "previous_response_id": None}
    gateway.fake.enqueue(Scenario(thinking="plan", tool_calls=[{"name": "read_file", "input": {"path": "a.py"}}]))
    r = httpx.post(gateway.url + "/cursor/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {"path": "a.py"}
    sent = gateway.fake.requests[-1].json
    assert sent["model"] == "claude-sonnet-4-20250514" and sent["thinking"]["type"] == "enabled"
    assert sent["system"][0]["text"] == "You are a coding agent." and sent["tools"][0]["name"] == "read_file"


@pytest.mark.parametrize("name", ["sonnet-4", "sonnet-4.5", "opus-4.6", "claude-4.5-sonnet", "claude-4-opus"])
def test_cursor_friendly_model_names(gateway, name):
    """Names without the claude- prefix (so Cursor does not reroute them) resolve through aliases."""
    _, key = gateway.user_with_key()
    r = httpx.post(gateway.url + "/cursor/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"model": name, "messages": HELLO})
    assert r.status_code == 200, r.text


def test_cursor_stream_finish_reasons(gateway):
    """Streaming on the Cursor route: tool turn ends tool_calls, a complete task stop, a cut turn length."""
    _, key = gateway.user_with_key()
    c = client(gateway, key, base="/cursor/v1")
    for scenario, expected in [(Scenario(tool_calls=[{"name": "get_weather", "input": {"city": "X"}}]), "tool_calls"),
                               (Scenario(), "stop"), (Scenario(stop_reason="max_tokens"), "length")]:
        gateway.fake.enqueue(scenario)
        finishes = [ch.choices[0].finish_reason for ch in c.chat.completions.create(
            model="sonnet-4", messages=HELLO, tools=[WEATHER_TOOL], stream=True) if ch.choices]
        assert [f for f in finishes if f] == [expected]


def test_cursor_models_listing(gateway):
    """GET /cursor/v1/models lists the catalog in OpenAI shape."""
    _, key = gateway.user_with_key()
    ids = [m.id for m in client(gateway, key, base="/cursor/v1").models.list()]
    assert "claude-sonnet-4-20250514" in ids


def test_openai_keepalive_is_a_comment(gateway_factory):
    """During upstream silence an OpenAI stream gets `: keepalive` comments, never a bare data line."""
    gw = gateway_factory(keepalive_interval=0.2)
    _, key = gw.user_with_key()
    gw.fake.enqueue(Scenario(chunks=2, delay=0.7))
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "claude-sonnet-4", "messages": HELLO, "stream": True}, timeout=20)
    assert r.text.count(": keepalive") >= 2 and r.text.rstrip().endswith("data: [DONE]")
