"""The fake Anthropic upstream answers like the real API, and its validator is as strict."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.anthropic_validator import validate_request
from tests.fake_upstream import FakeUpstream, Scenario, split_text

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


@pytest.mark.gen_test
async def test_non_stream_content_order(upstream):
    """Non-streamed content is thinking, text, then tool_use, with stop_reason tool_use."""
    upstream.enqueue(Scenario(thinking="hmm", tool_calls=[{"name": "get_weather", "input": {"city": "Oslo"}}]))
    msg = (await post(upstream, body(tools=[WEATHER_TOOL]))).json()
    assert [b["type"] for b in msg["content"]] == ["thinking", "text", "tool_use"]
    assert msg["content"][2]["input"] == {"city": "Oslo"} and msg["stop_reason"] == "tool_use"


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("status, error_type", [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"),
    (500, "api_error"), (529, "overloaded_error")])
@pytest.mark.gen_test
async def test_error_status(upstream, status, error_type):
    """A non-200 scenario answers the documented error JSON, streamed or not."""
    upstream.enqueue(Scenario(status=status), Scenario(status=status))
    for payload in (body(), body(stream=True)):
        r = await post(upstream, payload)
        err = r.json()
        assert r.status_code == status and r.headers["request-id"].startswith("req_fake_")
        assert err["type"] == "error" and err["error"]["type"] == error_type
        assert err["request_id"] == r.headers["request-id"] and err["error"]["message"]
        assert ("retry-after" in r.headers) == (status == 429)


@pytest.mark.gen_test
async def test_auth_and_version_headers_required(upstream):
    """A wrong key is 401, a Bearer token is accepted, a missing anthropic-version is 400."""
    assert (await post(upstream, body(), headers={**HEADERS, "x-api-key": "nope"})).status_code == 401
    bearer = {"Authorization": f"Bearer {upstream.api_key}", "anthropic-version": "2026-10-21"}
    assert (await post(upstream, body(), headers=bearer)).status_code == 200
    r = await post(upstream, body(), headers={"x-api-key": upstream.api_key})
    assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
    assert len(upstream.requests) == 3


@pytest.mark.gen_test
async def test_error_after_mid_stream(upstream):
    """error_after sends an overloaded error event after that many text deltas, and no message_stop."""
    upstream.enqueue(Scenario(chunks=6, error_after=2))
    events = await stream_events(upstream, body())
    names = [name for name, _ in events]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_delta", "error"]
    assert events[-1][1]["error"]["type"] == "overloaded_error"


@pytest.mark.gen_test
async def test_invalid_bodies_are_rejected(upstream):
    """Non-alternating roles and a tool_use without its tool_result get a 400 naming the problem."""
    twice = body()
    twice["messages"] = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    r = await post(upstream, twice)
    assert r.status_code == 400 and "alternate" in r.json()["error"]["message"]
    orphan = body(tools=[WEATHER_TOOL])
    orphan["messages"] = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": "never mind"}]
    r = await post(upstream, orphan)
    assert r.status_code == 400 and "toolu_1" in r.json()["error"]["message"]
    assert r.json()["error"]["type"] == "invalid_request_error"


# --- directives, count_tokens, disconnects ----------------------------------------------------

@pytest.mark.gen_test
async def test_directive_overrides_queue(upstream):
    """A [[scenario: ...]] directive in the last user message steers that request only."""
    upstream.enqueue(Scenario(status=500))
    events = await stream_events(upstream, body("Go [[scenario: chunks=7 delay=0]]"))
    assert sum(1 for n, _ in events if n == "content_block_delta") == 7
    r = await post(upstream, body("x [[scenario: status=529]]"))
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"
    msg = (await post(upstream, body("[[scenario: tool=get_weather]]", tools=[WEATHER_TOOL]))).json()
    assert msg["content"][-1]["name"] == "get_weather" and msg["content"][-1]["input"] == {"city": "fake"}
    assert (await post(upstream, body())).status_code == 500  # the queued scenario is still next


@pytest.mark.gen_test
async def test_count_tokens(upstream):
    """count_tokens is deterministic from messages + system, and honours the scenario status."""
    payload = {"model": "claude-sonnet-4-6", "system": "Be brief.",
               "messages": [{"role": "user", "content": "Hello there, how are you?"}]}
    expected = max(1, len(json.dumps(payload["messages"]) + json.dumps("Be brief.")) // 4)
    r = await post(upstream, payload, path="/v1/messages/count_tokens?beta=true")
    assert r.status_code == 200 and r.json() == {"input_tokens": expected}
    upstream.enqueue(Scenario(status=404))
    r = await post(upstream, payload, path="/v1/messages/count_tokens")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


@pytest.mark.gen_test(timeout=15)
async def test_client_disconnect_is_detected(upstream):
    """Closing a slow stream after the first event marks it disconnected and stops generation."""
    upstream.enqueue(Scenario(chunks=200, delay=0.02))
    async with httpx.AsyncClient(base_url=upstream.base_url, timeout=10) as client:
        async with client.stream("POST", "/v1/messages", json=body(stream=True), headers=HEADERS) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    assert json.loads(line[6:])["type"] == "message_start"
                    break
    rec = upstream.requests[0]
    await asyncio.wait_for(rec.done.wait(), 5)
    sent = rec.events_sent
    await asyncio.sleep(0.2)
    assert rec.disconnected and not rec.finished and rec.events_sent == sent < 50


@pytest.mark.gen_test(timeout=15)
async def test_hang_sends_nothing_until_client_gives_up(upstream):
    """A hanging scenario sends no headers; the client's timeout ends it and it is recorded."""
    upstream.enqueue(Scenario(hang=True))
    with pytest.raises(httpx.ReadTimeout):
        async with httpx.AsyncClient(base_url=upstream.base_url, timeout=0.3) as client:
            await client.post("/v1/messages", json=body(), headers=HEADERS)
    rec = upstream.requests[0]
    await asyncio.wait_for(rec.done.wait(), 5)
    assert rec.disconnected and rec.status == 0 and rec.events_sent == 0


@pytest.mark.gen_test
async def test_many_requests_are_fast(upstream):
    """A few hundred requests are nothing (keeps the fake usable in load-ish tests)."""
    async with httpx.AsyncClient(base_url=upstream.base_url, timeout=10) as client:
        results = await asyncio.gather(*[
            client.post("/v1/messages", json=body(stream=bool(i % 2)), headers=HEADERS)
            for i in range(200)])
    assert all(r.status_code == 200 for r in results) and len(upstream.requests) == 200


# --- pure helpers -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, pieces", [("Hello from the fake upstream.", None), ("a b", 5),
                                          ("one two three four five six", 4), ("x", 50), ("", 3)])
def test_split_text(text, pieces):
    """Deltas join back to the text, and `chunks` gives exactly that many deltas."""
    out = split_text(text, pieces)
    if not text:
        assert out == []
    elif pieces is not None and pieces <= len(text.split()):
        assert len(out) == pieces and "".join(out) == text
    elif pieces is not None:
        assert len(out) == pieces
    else:
        assert "".join(out) == text and 1 <= len(out) <= 5


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
