"""The Responses translator on its own: arbitrary bodies raise only InvalidRequest, and what it
accepts is a valid Anthropic request (checked by the fake upstream's validator)."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.errors import InvalidRequest
from services.core.types import Model
from services.protocols.openai_responses.request import responses_to_anthropic
from services.protocols.openai_responses.response import anthropic_to_response, encode_envelope
from services.protocols.openai_responses.stream import ResponsesStreamTranslator
from tests.anthropic_validator import validate_request
from tests.responses_fixtures import CODEX_FOLLOW_UP_ITEMS, codex_turn_one

MODEL = Model(id="claude-sonnet-4-6", upstream_id="claude-sonnet-4-6", display_name="Claude Sonnet 4.6",
              max_input=200_000, max_output=64_000, price_per_1k_micro=130_000,
              features=("thinking", "vision"), adaptive_thinking=True)

scalars = st.none() | st.booleans() | st.integers(-5, 70_000) | st.text(max_size=12) | \
    st.sampled_from(["user", "assistant", "developer", "system", "message", "function_call", "auto",
                     "function_call_output", "reasoning", "custom_tool_call", "custom_tool_call_output",
                     "input_text", "output_text", "input_image", "input_file", "refusal", "function",
                     "namespace", "custom", "web_search", "required", "none", "json_schema", "high",
                     "call_1", "data:image/png;base64,AAAA", "cheaplm.v1:e30", "{\"a\": 1}"])
KEYS = ["type", "role", "content", "text", "name", "call_id", "arguments", "output", "input", "namespace",
        "tools", "parameters", "image_url", "file_data", "file_url", "encrypted_content", "summary",
        "refusal", "format", "schema", "effort", "mode", "id", "status", "filename", "file_id"]
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5), max_leaves=25)
TOP = ["instructions", "tools", "tool_choice", "parallel_tool_calls", "reasoning", "max_output_tokens", "text",
       "stream", "include", "temperature", "top_p", "metadata", "store", "user", "truncation"]
texts = st.text(max_size=8) | st.sampled_from(["hi", " ", "", "call_1"])
parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "output_text", "input_image", "input_file", "refusal", "x"])},
    optional={"text": texts, "refusal": texts, "image_url": st.sampled_from(
        ["data:image/png;base64,AAAA", "https://e.x/a.png", "ftp://x", "data:text/plain;base64,aGk="]),
        "file_data": st.sampled_from(["JVBERi0=", "data:application/pdf;base64,JVBERi0="]),
        "file_url": st.sampled_from(["https://e.x/a.pdf", "x"]), "filename": texts, "file_id": texts})
contents = texts | st.lists(parts, max_size=3) | values
call_ids = st.sampled_from(["call_1", "call_2", "toolu_1", "bad id!", ""])
items = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning",
                              "custom_tool_call", "custom_tool_call_output", "item_reference", "zzz"])},
    optional={"role": st.sampled_from(["user", "assistant", "developer", "system", "tool"]), "content": contents,
              "call_id": call_ids, "name": st.sampled_from(["f", "g", "close_agent", ""]),
              "namespace": st.sampled_from(["ns", None]), "arguments": st.sampled_from(["{}", "", "{\"a\": 1}", "[1]", "{"]),
              "output": contents, "input": texts, "summary": values,
              "encrypted_content": st.sampled_from(["cheaplm.v1:e30", "cheaplm.v1:!!", "OPAQUE", encode_envelope(
                  "claude-sonnet-4-6", {"type": "thinking", "thinking": "t", "signature": "s"})])})
tool_defs = st.fixed_dictionaries(
    {"type": st.sampled_from(["function", "custom", "namespace", "web_search", "mcp", "local_shell"]),
     "name": st.sampled_from(["f", "g", "ns", "close_agent"])},
    optional={"parameters": st.sampled_from([{"type": "object"}, {"properties": {}}, None, "x"]),
              "description": texts, "tools": st.lists(st.fixed_dictionaries(
                  {"type": st.sampled_from(["function", "custom"]), "name": st.sampled_from(["close_agent", "f"])}),
                  max_size=2),
              "format": st.sampled_from([{"type": "text"}, {"type": "grammar", "syntax": "lark", "definition": "x"}])})
structured = {"input": texts | st.lists(items, max_size=7), "tools": st.lists(tool_defs, max_size=3),
              "tool_choice": st.sampled_from(["auto", "none", "required", {"type": "function", "name": "f"},
                                              {"type": "allowed_tools", "mode": "auto", "tools": [{"name": "g"}]}]),
              "reasoning": st.fixed_dictionaries({}, optional={"effort": st.sampled_from(
                  ["none", "low", "high", "max", "bogus"]), "summary": st.sampled_from(["auto", None, "x"])}),
              "text": st.sampled_from([{"format": {"type": "text"}}, {"format": {"type": "json_object"}},
                                       {"format": {"type": "json_schema", "schema": {"type": "object"}}}]),
              "include": st.just(["reasoning.encrypted_content"]), "parallel_tool_calls": st.booleans(),
              "stream": st.booleans(), "max_output_tokens": st.integers(-1, 100_000), "instructions": texts,
              "temperature": st.none() | st.floats(0, 2), "top_p": st.none() | st.floats(0, 1),
              "metadata": st.just({"a": "b"}), "user": texts, "store": st.booleans(), "truncation": st.just("auto")}
bodies = st.fixed_dictionaries({"model": st.just("claude-sonnet-4-6"), "input": structured["input"]},
                               optional={k: structured[k] for k in TOP}) | \
    st.fixed_dictionaries({"model": st.just("m")}, optional={k: values for k in TOP + ["input", "previous_response_id"]})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_translator_raises_only_invalid_request(body):
    try:
        plan = responses_to_anthropic(body, MODEL)
    except InvalidRequest as err:
        assert err.param is not None
        return
    assert validate_request(plan.body) == []


def test_codex_fixtures_translate_to_valid_requests():
    body = codex_turn_one()
    assert validate_request(responses_to_anthropic(body, MODEL).body) == []
    body["input"] += CODEX_FOLLOW_UP_ITEMS
    plan = responses_to_anthropic(body, MODEL)
    assert validate_request(plan.body) == []
    assert plan.encrypted and plan.summaries and plan.namespaced["multi_agent_v1__close_agent"] == (
        "multi_agent_v1", "close_agent")


def test_envelope_round_trip_is_bound_to_the_model():
    block = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    history = [{"role": "user", "content": "q"},
               {"type": "reasoning", "summary": [], "encrypted_content": encode_envelope("claude-sonnet-4-6", block)},
               {"type": "function_call", "call_id": "toolu_1", "name": "f", "arguments": "{}"},
               {"type": "function_call_output", "call_id": "toolu_1", "output": "ok"}]
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    plan = responses_to_anthropic({"model": "m", "input": history, "tools": tools,
                                   "reasoning": {"effort": "high"}}, MODEL)
    assert plan.body["messages"][1]["content"][0] == block and plan.body["thinking"] == {"type": "adaptive"}
    other = Model(**{**MODEL.__dict__, "upstream_id": "claude-opus-4-8"})
    plan = responses_to_anthropic({"model": "m", "input": history, "tools": tools,
                                   "reasoning": {"effort": "high"}}, other)
    # Another model's envelope is dropped, and without it thinking cannot continue the tool loop.
    assert plan.body["messages"][1]["content"][0]["type"] == "tool_use" and "thinking" not in plan.body
    assert "reasoning" in plan.dropped_params


def test_unanswered_call_gets_a_synthetic_result():
    plan = responses_to_anthropic({"model": "m", "input": [
        {"role": "user", "content": "q"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"cmd\": \"echo hi\""},
        {"role": "user", "content": "never mind"}]}, MODEL)
    assert validate_request(plan.body) == []
    user = plan.body["messages"][2]["content"]
    assert user[0] == {"type": "tool_result", "tool_use_id": "c1", "is_error": True, "content": "no result"}
    assert plan.body["messages"][1]["content"][0]["input"] == {}  # Codex replays broken arguments
    assert plan.body["tool_choice"] == {"type": "none"}  # history tools declared, not offered


def test_later_developer_message_stays_in_place():
    plan = responses_to_anthropic({"model": "m", "instructions": "A", "input": [
        {"role": "developer", "content": "B"}, {"role": "user", "content": "q"},
        {"role": "developer", "content": "C"}]}, MODEL)
    assert [b["text"] for b in plan.body["system"]] == ["A", "B"]
    assert plan.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "q"},
                                                                  {"type": "text", "text": "C"}]}]


def test_stream_and_whole_answers_agree():
    plan = responses_to_anthropic({"model": "m", "input": "q", "include": ["reasoning.encrypted_content"],
                                   "reasoning": {"effort": "low", "summary": "auto"}}, MODEL)
    message = {"id": "msg_1", "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                                          {"type": "text", "text": "Hi"}],
               "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 4}}
    whole = anthropic_to_response(message, plan, response_id="resp_x", created=1)
    tr = ResponsesStreamTranslator(plan, response_id="resp_x", created=1)
    tr.feed("message_start", {"message": {"usage": {"input_tokens": 3, "output_tokens": 1}}})
    tr.feed("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}})
    tr.feed("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "t"}})
    tr.feed("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "s"}})
    tr.feed("content_block_stop", {"index": 0})
    tr.feed("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}})
    tr.feed("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "Hi"}})
    tr.feed("content_block_stop", {"index": 1})
    tr.feed("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}})
    tr.feed("message_stop", {})
    assert tr.output == whole["output"]
