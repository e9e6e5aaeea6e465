"""The fake upstream the tests stand on stays honest: its answers follow the Anthropic
sequence, and its validator accepts what the real API accepts and rejects the rest."""
from __future__ import annotations

import json

import httpx
import pytest

from tests.anthropic_validator import validate_request
from tests.fake_upstream import FakeUpstream, Scenario

# pytest-tornado's io_loop fixture calls deprecated tornado APIs; that is not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HEADERS = {"x-api-key": FakeUpstream.api_key, "anthropic-version": "2023-06-01"}
WEATHER_TOOL = {"name": "get_weather", "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"]}}


def body(text: str = "Hi", **extra) -> dict:
    return {"model": "claude-sonnet-4-6", "max_tokens": 2048,
            "messages": [{"role": "user", "content": text}], **extra}


def parse_sse(raw: str) -> list[tuple[str, dict]]:
    """(event name, data) pairs; asserts every frame has both lines."""
    events = []
    for frame in raw.strip().split("\n\n"):
        name_line, data_line = frame.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: "), frame
        events.append((name_line[7:], json.loads(data_line[6:])))
    return events


@pytest.fixture
def upstream(io_loop):
    up = FakeUpstream()
    io_loop.run_sync(up.start)
    yield up
    io_loop.run_sync(up.stop)


async def post(up: FakeUpstream, payload: dict, *, path: str = "/v1/messages",
               headers: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=up.base_url, timeout=10) as client:
        return await client.post(path, json=payload, headers=HEADERS if headers is None else headers)


async def stream_events(up: FakeUpstream, payload: dict) -> list[tuple[str, dict]]:
    r = await post(up, {**payload, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    return parse_sse(r.text)


# --- messages -------------------------------------------------------------------------------

@pytest.mark.gen_test
async def test_non_stream_message(upstream):
    """A non-streamed request gets the full message JSON and the upstream's headers."""
    r = await post(upstream, body(), path="/v1/messages?beta=true")
    msg = r.json()
    assert r.status_code == 200
    assert msg["id"] == "msg_fake_1" and msg["type"] == "message" and msg["role"] == "assistant"
    assert msg["model"] == "claude-sonnet-4-6" and msg["stop_reason"] == "end_turn"
    assert msg["stop_sequence"] is None
    assert msg["content"] == [{"type": "text", "text": "Hello from the fake upstream."}]
    assert msg["usage"]["input_tokens"] == 25 and msg["usage"]["output_tokens"] == 150
    assert r.headers["request-id"] == "req_fake_1"
    assert r.headers["anthropic-ratelimit-requests-remaining"] == "999"
    assert r.headers["anthropic-ratelimit-tokens-remaining"] == "99999"
    rec = upstream.requests[0]
    assert (rec.method, rec.path, rec.query) == ("POST", "/v1/messages", "beta=true")
    assert rec.json["model"] == "claude-sonnet-4-6" and rec.headers["x-api-key"] == HEADERS["x-api-key"]
    assert rec.finished and not rec.disconnected and rec.done.is_set() and rec.status == 200


@pytest.mark.gen_test
async def test_stream_text_sequence(upstream):
    """A text stream is exactly start, block start, ping, N deltas, block stop, delta, stop."""
    upstream.enqueue(Scenario(text="one two three", chunks=3,
                              usage={"input_tokens": 7, "output_tokens": 42,
                                     "cache_read_input_tokens": 500}))
    events = await stream_events(upstream, body())
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta",
        "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "one two three"
    start_usage = events[0][1]["message"]["usage"]
    assert start_usage == {"input_tokens": 7, "cache_creation_input_tokens": 0,
                           "cache_read_input_tokens": 500, "output_tokens": 1}
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"]["output_tokens"] == 42 and final["usage"]["cache_read_input_tokens"] == 500
    assert upstream.requests[0].events_sent == len(events) and upstream.requests[0].finished


@pytest.mark.gen_test
async def test_stream_tool_use(upstream):
    """Tool input streams as input_json_delta fragments (first one empty) that join to the input."""
    args = {"city": "Paris", "units": "metric"}
    upstream.enqueue(Scenario(text="Checking.", chunks=1,
                              tool_calls=[{"name": "get_weather", "input": args}]))
    events = await stream_events(upstream, body(tools=[WEATHER_TOOL]))
    names = [name for name, _ in events]
    assert names[:7] == ["message_start", "content_block_start", "ping", "content_block_delta",
                         "content_block_stop", "content_block_start", "content_block_delta"]
    assert names[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    tool_start = events[5][1]["content_block"]
    assert tool_start["type"] == "tool_use" and tool_start["name"] == "get_weather"
    assert tool_start["input"] == {}
    fragments = [d["delta"]["partial_json"] for n, d in events
                 if n == "content_block_delta" and d["index"] == 1]
    assert fragments[0] == "" and len(fragments) > 2 and json.loads("".join(fragments)) == args
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.gen_test
async def test_stream_thinking_block_has_signature(upstream):
    """A thinking block comes first, its deltas end with a signature_delta."""
    upstream.enqueue(Scenario(thinking="Let me think about it", signature="sig=="))
    events = await stream_events(upstream, body(thinking={"type": "enabled", "budget_tokens": 1024}))
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    block0 = [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == 0]
    assert "".join(d.get("thinking", "") for d in block0) == "Let me think about it"
    assert block0[-1] == {"type": "signature_delta", "signature": "sig=="}
    names = [name for name, _ in events]
    assert names[:3 + len(block0) + 2] == ["message_start", "content_block_start", "ping",
                                          *["content_block_delta"] * len(block0),
                                          "content_block_stop", "content_block_start"]
    assert events[3 + len(block0) + 1][1]["content_block"]["type"] == "text"


def tool_turns(result_first: bool = True) -> list[dict]:
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}
    text = {"type": "text", "text": "and then?"}
    return [{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "need tool", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [result, text] if result_first else [text, result]}]


VALID = {
    "minimal": body(),
    "tool-loop": body(tools=[WEATHER_TOOL], messages=tool_turns(), tool_choice={"type": "auto"}),
    "system-blocks": body(system=[{"type": "text", "text": "Be nice", "cache_control": {"type": "ephemeral"}}]),
    "thinking": body(thinking={"type": "enabled", "budget_tokens": 1024}, temperature=1),
    "adaptive": body(thinking={"type": "adaptive"}, context_management={"edits": []}),
    "image": body(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
        {"type": "text", "text": "what is this?"}]}]),
    "empty-prefill": body(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]),
    "server-tool": body(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
    "sampling": body(temperature=0.2, top_p=0.9, top_k=5, stop_sequences=["END"], stream=False,
                     metadata={"user_id": "u1"}),
}

INVALID = {
    "no-model": ({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, "model"),
    "bool-max-tokens": (body(max_tokens=True), "max_tokens"),
    "zero-max-tokens": (body(max_tokens=0), "max_tokens"),
    "no-messages": (body(messages=[]), "messages"),
    "assistant-first": (body(messages=[{"role": "assistant", "content": "hi"}]), "first message"),
    "bad-role": (body(messages=[{"role": "system", "content": "hi"}]), "role"),
    "blank-text": (body(messages=[{"role": "user", "content": [{"type": "text", "text": "  "}]}]), "whitespace"),
    "blank-string": (body(messages=[{"role": "user", "content": " "}]), "non-empty"),
    "prefill-trailing-space": (body(messages=[{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "Sure "}]), "trailing"),
    "block-without-type": (body(messages=[{"role": "user", "content": [{"text": "hi"}]}]), "type"),
    "bad-image": (body(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "x"}}]}]), "media_type"),
    "tool-use-in-user": (body(messages=[{"role": "user", "content": [
        {"type": "tool_use", "id": "t1", "name": "x", "input": {}}]}]), "assistant messages"),
    "tool-result-after-text": (body(messages=tool_turns(result_first=False)), "toolu_1"),
    "unknown-tool-result": (body(messages=[{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_9"}]}]), "toolu_9"),
    "bad-tool-name": (body(tools=[{"name": "get weather", "input_schema": {"type": "object"}}]), "tools.0.name"),
    "bad-schema": (body(tools=[{"name": "t", "input_schema": {"type": "array"}}]), "input_schema"),
    "tool-choice-unknown-tool": (body(tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "x"}),
                                 "tool_choice.name"),
    "budget-too-small": (body(thinking={"type": "enabled", "budget_tokens": 500}), "budget_tokens"),
    "budget-over-max": (body(max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 2000}), "budget_tokens"),
    "thinking-forced-tool": (body(tools=[WEATHER_TOOL], thinking={"type": "adaptive"},
                                  tool_choice={"type": "any"}), "tool_choice"),
    "thinking-temperature": (body(thinking={"type": "adaptive"}, temperature=0.5), "temperature"),
    "thinking-top-k": (body(thinking={"type": "adaptive"}, top_k=5), "top_k"),
    "temperature-range": (body(temperature=1.5), "temperature"),
    "empty-stop-sequence": (body(stop_sequences=[""]), "stop_sequences"),
    "stream-not-bool": (body(stream="yes"), "stream"),
    "metadata-user-id": (body(metadata={"user_id": 5}), "metadata.user_id"),
    "empty-system-block": (body(system=[{"type": "text", "text": ""}]), "system.0"),
}


@pytest.mark.parametrize("payload", VALID.values(), ids=VALID.keys())
def test_validator_accepts(payload):
    """Well-formed requests, including tool loops, thinking and betas, have no problems."""
    assert validate_request(payload) == []


@pytest.mark.parametrize("payload, needle", INVALID.values(), ids=INVALID.keys())
def test_validator_rejects(payload, needle):
    """Each malformed request is reported, and the message points at the culprit."""
    problems = validate_request(payload)
    assert problems and any(needle in p for p in problems), problems


def test_validator_count_tokens_mode():
    """count_tokens bodies need no max_tokens but are otherwise checked the same way."""
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert validate_request(payload, count_tokens=True) == []
    assert validate_request(payload) == ["max_tokens: must be an integer >= 1"]
