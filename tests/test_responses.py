"""The OpenAI Responses API (/v1/responses) through the official openai SDK, raw HTTP and the
fake upstream: text, tool round trips, reasoning, errors, billing."""
from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.fake_upstream import Scenario
from tests.responses_fixtures import CODEX_FOLLOW_UP_ITEMS, codex_turn_one

MODEL = "claude-sonnet-4-5"
EXEC = {"type": "function", "name": "exec_command", "description": "Run a shell command.", "strict": False,
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"],
                       "additionalProperties": False}}


def client(gw, key, base="/v1") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gw.url + base, max_retries=0, timeout=20)


def events(gw, key, body: dict, path="/v1/responses") -> list[dict]:
    with httpx.stream("POST", gw.url + path, headers={"Authorization": f"Bearer {key}"},
                      json={**body, "stream": True}, timeout=20) as r:
        assert r.status_code == 200, r.read()
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    return [json.loads(line[6:]) for line in lines]


def test_create_text_bills_and_echoes_the_model(gateway):
    """A non-streamed answer: one message item, usage with cached tokens, the requested model,
    the call billed like any other route."""
    user, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(text="Hi there!", usage={"input_tokens": 20, "cache_read_input_tokens": 100,
                                                           "output_tokens": 12}))
    before = gateway.micro_balance(user)
    r = client(gateway, key).responses.create(model=MODEL, instructions="Be brief.", input="say hi")
    assert r.output_text == "Hi there!" and r.status == "completed" and r.model == MODEL
    assert r.id.startswith("resp_") and r.output[0].type == "message"
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (120, 12, 132)
    assert r.usage.input_tokens_details.cached_tokens == 100
    sent = gateway.fake.requests[-1].json
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "say hi"}]}]
    balance, held = gateway.micro_balance(user)
    assert held == 0 and balance < before[0]
    rows = gateway.usage(user)
    assert rows[0]["endpoint"] == "responses" and rows[0]["status"] == 200


def test_stream_helper_text(gateway):
    """`responses.stream()` (the SDK's strict helper) accepts the event sequence and yields the text."""
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(text="a b c", chunks=3))
    with client(gateway, key).responses.stream(model=MODEL, input="say hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "a b c" and final.output_text == "a b c"
    assert final.usage.output_tokens == 150 and final.status == "completed"


def test_stream_sequence_numbers_and_lifecycle(gateway):
    """Raw events: created, in_progress first; sequence numbers 0,1,2…; completed last; no [DONE]."""
    _, key = gateway.user_with_key()
    evs = events(gateway, key, {"model": MODEL, "input": "hi"})
    assert [e["type"] for e in evs[:2]] == ["response.created", "response.in_progress"]
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert evs[-1]["type"] == "response.completed"
    assert {e["response"]["id"] for e in evs if "response" in e} == {evs[0]["response"]["id"]}
    done = [e["item"] for e in evs if e["type"] == "response.output_item.done"]
    assert done == evs[-1]["response"]["output"]


def test_tool_round_trip_with_the_sdk(gateway):
    """First turn: a function_call (call_id = the upstream's toolu id); second turn, with the
    call and its output replayed: text. The upstream sees tool_use / tool_result paired."""
    _, key = gateway.user_with_key()
    c = client(gateway, key)
    gateway.fake.enqueue(Scenario(text="", tool_calls=[{"name": "exec_command", "input": {"cmd": "echo hi"}}]),
                         Scenario(text="It printed hi."))
    with c.responses.stream(model=MODEL, input="run echo hi", tools=[EXEC]) as stream:
        first = stream.get_final_response()
    call = [o for o in first.output if o.type == "function_call"][0]
    assert call.name == "exec_command" and json.loads(call.arguments) == {"cmd": "echo hi"}
    assert call.call_id.startswith("toolu_")
    history = [{"role": "user", "content": "run echo hi"}, *[o.model_dump(exclude_none=True) for o in first.output],
               {"type": "function_call_output", "call_id": call.call_id, "output": "hi\n"}]
    second = c.responses.create(model=MODEL, input=history, tools=[EXEC])
    assert second.output_text == "It printed hi."
    sent = gateway.fake.requests[-1].json["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["content"][-1]["type"] == "tool_use"
    assert sent[2]["content"][0] == {"type": "tool_result", "tool_use_id": call.call_id, "content": "hi\n"}


def test_reasoning_summary_and_encrypted_round_trip(gateway):
    """Effort turns thinking on; the thinking comes back as a summary and a sealed envelope,
    which, replayed, reaches the upstream as the same signed thinking block."""
    _, key = gateway.user_with_key()
    c = client(gateway, key)
    gateway.fake.enqueue(Scenario(text="", thinking="I should run it.", signature="SIG123",
                                  tool_calls=[{"name": "exec_command", "input": {"cmd": "ls"}}]),
                         Scenario(text="Done."))
    with c.responses.stream(model=MODEL, input="list files", tools=[EXEC], include=["reasoning.encrypted_content"],
                            reasoning={"effort": "high", "summary": "auto"}) as stream:
        summary = "".join(e.delta for e in stream if e.type == "response.reasoning_summary_text.delta")
        first = stream.get_final_response()
    assert summary == "I should run it."
    sent = gateway.fake.requests[-1].json
    assert sent["thinking"]["type"] in ("enabled", "adaptive")
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "I should run it."
    assert reasoning.encrypted_content.startswith("cheaplm.v1:")
    call = first.output[1]
    history = ["list files", *[o.model_dump(exclude_none=True) for o in first.output],
               {"type": "function_call_output", "call_id": call.call_id, "output": "a.txt"}]
    history[0] = {"role": "user", "content": history[0]}
    c.responses.create(model=MODEL, input=history, tools=[EXEC], reasoning={"effort": "high"},
                       include=["reasoning.encrypted_content"])
    assistant = gateway.fake.requests[-1].json["messages"][1]["content"]
    assert assistant[0] == {"type": "thinking", "thinking": "I should run it.", "signature": "SIG123"}
    assert gateway.fake.requests[-1].json.get("thinking", {}).get("type") in ("enabled", "adaptive")


def test_upstream_error_before_the_stream_is_an_openai_error(gateway):
    """An upstream 529 → the SDK raises with an OpenAI-shaped error; nothing is charged."""
    user, key = gateway.user_with_key()
    before = gateway.micro_balance(user)
    gateway.fake.enqueue(Scenario(status=529))
    with pytest.raises(openai.APIStatusError) as info:
        client(gateway, key).responses.create(model=MODEL, input="hi")
    assert info.value.status_code == 529
    assert gateway.micro_balance(user) == before


def test_error_mid_stream_is_response_failed(gateway):
    """An upstream `error` event after the 200 → `response.failed` with code server_error and
    the finished items; the SDK helper then has no final response."""
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(text="one two three four", chunks=4, error_after=2))
    with client(gateway, key).responses.stream(model=MODEL, input="hi") as stream:
        kinds = [e.type for e in stream]
        with pytest.raises(RuntimeError):
            stream.get_final_response()
    assert kinds[-1] == "response.failed"
    gateway.fake.enqueue(Scenario(text="one two three four", chunks=4, error_after=2))
    last = events(gateway, key, {"model": MODEL, "input": "hi"})[-1]
    assert last["response"]["status"] == "failed" and last["response"]["error"]["code"] == "server_error"


def test_max_tokens_is_incomplete(gateway):
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(text="cut short", stop_reason="max_tokens"))
    r = client(gateway, key).responses.create(model=MODEL, input="hi", max_output_tokens=50)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert gateway.fake.requests[-1].json["max_tokens"] == 50


def test_previous_response_id_is_a_clear_400(gateway):
    _, key = gateway.user_with_key()
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway, key).responses.create(model=MODEL, input="hi", previous_response_id="resp_1")
    assert info.value.code == "unsupported_parameter" and info.value.param == "previous_response_id"
    assert "does not store responses" in info.value.message
    assert not gateway.fake.requests


def test_prompt_too_long_is_context_length_exceeded(gateway):
    """The upstream's 'prompt is too long' 400 keeps its message and gets the code Codex acts on
    (it then stops retrying and tells the user the context window is full)."""
    _, key = gateway.user_with_key()
    message = "prompt is too long: 250000 tokens > 200000 maximum"
    gateway.fake.enqueue(Scenario(status=400, error_message=message))
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway, key).responses.create(model=MODEL, input="hi")
    assert info.value.code == "context_length_exceeded" and message in info.value.message


def test_json_schema_output(gateway):
    """text.format json_schema: the upstream is made to answer through the JSON tool, and the
    client gets plain output_text holding the JSON."""
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(text="", tool_calls=[{"name": "json_tool_call", "input": {"title": "Say hi"}}]))
    r = client(gateway, key).responses.create(model=MODEL, input="title?", text={"format": {
        "type": "json_schema", "name": "t", "strict": True, "schema": {
            "type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"],
            "additionalProperties": False}}})
    assert json.loads(r.output_text) == {"title": "Say hi"} and r.status == "completed"
    sent = gateway.fake.requests[-1].json
    assert sent["tool_choice"] == {"type": "tool", "name": "json_tool_call"}


def test_codex_turn_one_fixture(gateway):
    """Codex 0.169's turn-1 body: developer items → system, namespace tools flattened, hosted
    web_search dropped, the Codex-only fields not forwarded; a namespaced call comes back with
    `namespace` and the bare name."""
    _, key = gateway.user_with_key()
    gateway.fake.enqueue(Scenario(text="", tool_calls=[{"name": "multi_agent_v1__close_agent", "input": {}}]))
    evs = events(gateway, key, codex_turn_one())
    sent = gateway.fake.requests[-1].json
    assert [b["text"][:20] for b in sent["system"]] == ["You are a coding age", "<skills_instructions",
                                                       "<permissions instruc"]
    names = [t["name"] for t in sent["tools"]]
    assert "exec_command" in names and "multi_agent_v1__close_agent" in names and "web_search" not in names
    assert not {"client_metadata", "prompt_cache_key", "include", "store"} & set(sent)
    assert [m["role"] for m in sent["messages"]] == ["user"]
    call = [e["item"] for e in evs if e["type"] == "response.output_item.done"][0]
    assert call["namespace"] == "multi_agent_v1" and call["name"] == "close_agent" and call["arguments"] == "{}"


def test_codex_follow_up_fixture(gateway):
    """Codex's follow-up: reasoning (a foreign blob: dropped), assistant text, the call and its
    output grouped into one assistant turn and one user turn."""
    _, key = gateway.user_with_key()
    body = codex_turn_one()
    body["input"] = body["input"] + CODEX_FOLLOW_UP_ITEMS
    assert events(gateway, key, body)[-1]["type"] == "response.completed"
    messages = gateway.fake.requests[-1].json["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["type"] for b in messages[1]["content"]] == ["text", "tool_use"]
    assert messages[1]["content"][1] == {"type": "tool_use", "id": "call_abc123", "name": "exec_command",
                                         "input": {"cmd": "echo hi"}}
    assert messages[2]["content"][0]["tool_use_id"] == "call_abc123"


def test_custom_tool_round_trip(gateway):
    """A freeform (custom) tool: offered as a one-string-field tool, answered as custom_tool_call."""
    _, key = gateway.user_with_key()
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"
    gateway.fake.enqueue(Scenario(text="", tool_calls=[{"name": "apply_patch", "input": {"input": patch}}]))
    tool = {"type": "custom", "name": "apply_patch", "description": "Apply a patch.",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
    evs = events(gateway, key, {"model": MODEL, "input": "add hello.txt", "tools": [tool]})
    item = [e["item"] for e in evs if e["type"] == "response.output_item.done"][0]
    assert item["type"] == "custom_tool_call" and item["input"] == patch
    body = {"model": MODEL, "tools": [tool], "input": [
        {"role": "user", "content": "add hello.txt"}, item,
        {"type": "custom_tool_call_output", "call_id": item["call_id"], "output": "Success."}]}
    r = httpx.post(gateway.url + "/v1/responses", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=20)
    assert r.status_code == 200, r.text
    sent = gateway.fake.requests[-1].json["messages"]
    assert sent[1]["content"][0]["input"] == {"input": patch}


@pytest.mark.parametrize("path", ["/api/v1/responses", "/cursor/v1/responses", "/responses"])
def test_other_paths(gateway, path):
    _, key = gateway.user_with_key()
    evs = events(gateway, key, {"model": MODEL, "input": "hi"}, path=path)
    assert evs[-1]["type"] == "response.completed"


def test_stored_response_endpoints_are_404(gateway):
    _, key = gateway.user_with_key()
    r = httpx.get(gateway.url + "/v1/responses/resp_1", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 404 and "does not store" in r.json()["error"]["message"]


def test_keepalive_is_a_repeated_in_progress_event(gateway_factory):
    """During upstream silence the heartbeat is a `response.in_progress` data event with the
    same response id (Codex's idle timer ignores SSE comments), which the SDK helper accepts."""
    gw = gateway_factory(keepalive_interval=0.2)
    _, key = gw.user_with_key()
    gw.fake.enqueue(Scenario(text="slow answer here", chunks=3, delay=0.7))
    with client(gw, key).responses.stream(model=MODEL, input="hi") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds.count("response.in_progress") > 1 and final.output_text == "slow answer here"
