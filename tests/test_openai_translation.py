"""OpenAI Chat Completions ⇄ Anthropic Messages translation (services/protocols/)."""
from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.errors import InvalidRequest
from services.core.types import Model
from services.protocols.openai_chat.cursor import responses_to_chat
from services.protocols.openai_chat.request import (
    JSON_TOOL_NAME,
    PLACEHOLDER_TEXT,
    ChatPlan,
    chat_to_anthropic,
    split_thinking_suffix,
)
from services.protocols.openai_chat.response import anthropic_to_chat
from services.protocols.openai_chat.stream import KEEPALIVE, ChatStreamTranslator
from tests.anthropic_validator import validate_request


def model(upstream_id: str, max_output: int, supports_thinking: bool, adaptive_thinking: bool = False) -> Model:
    """A catalog model with just what the translation reads."""
    return Model(id=upstream_id, upstream_id=upstream_id, display_name=upstream_id, max_input=200_000,
                 max_output=max_output, price_per_1k_micro=0,
                 features=("thinking",) if supports_thinking else (), adaptive_thinking=adaptive_thinking)


SONNET = model("claude-sonnet-4-20250514", max_output=16000, supports_thinking=True)
ADAPTIVE = model("claude-opus-4-6", max_output=32000, supports_thinking=True, adaptive_thinking=True)
HAIKU = model("claude-3-5-haiku-20241022", max_output=8000, supports_thinking=False)

PNG_B64 = "iVBORw0KGgo="
PDF_B64 = "JVBERi0xLjQK"


def chat(*messages: dict, **params) -> dict:
    return {"model": "gw-sonnet", "messages": list(messages), **params}


def user(content="hi") -> dict:
    return {"role": "user", "content": content}


def assistant(content=None, *calls: tuple[str, str, str]) -> dict:
    msg = {"role": "assistant", "content": content}
    if calls:
        msg["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                             for i, n, a in calls]
    return msg


def tool(call_id: str, content="ok") -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def fn_tool(name: str, parameters: dict | None = None) -> dict:
    fn = {"name": name, "description": f"{name} tool"}
    if parameters is not None:
        fn["parameters"] = parameters
    return {"type": "function", "function": fn}


def translate(body: dict, limits: Model = SONNET, **kwargs) -> ChatPlan:
    """Translate and insist the result is a valid Messages request."""
    plan = chat_to_anthropic(body, limits, **kwargs)
    assert validate_request(plan.body) == []
    return plan


def text(s: str) -> dict:
    return {"type": "text", "text": s}


# --------------------------------------------------------------------------- request: messages

def test_system_and_developer_messages_become_system_blocks_in_order():
    """System and developer messages anywhere (string or text parts) join `system`, keeping cache_control."""
    plan = translate(chat(
        {"role": "system", "content": "rule one"},
        user("hi"),
        {"role": "developer", "content": [{"type": "text", "text": "rule two",
                                           "cache_control": {"type": "ephemeral"}},
                                          {"type": "text", "text": "   "}]},
        assistant("hello"),
        {"role": "system", "content": "rule three", "name": "ignored"},
        user("again"),
    ))
    assert plan.body["system"] == [text("rule one"),
                                   {**text("rule two"), "cache_control": {"type": "ephemeral"}},
                                   text("rule three")]
    assert [m["role"] for m in plan.body["messages"]] == ["user", "assistant", "user"]


def test_consecutive_same_role_messages_are_merged():
    """Consecutive user (and assistant) messages become one turn with their blocks concatenated."""
    plan = translate(chat(user("a"), user([text("b")]), assistant("c"), assistant("d"), user("e")))
    assert plan.body["messages"] == [
        {"role": "user", "content": [text("a"), text("b")]},
        {"role": "assistant", "content": [text("c"), text("d")]},
        {"role": "user", "content": [text("e")]},
    ]


def test_tool_round_trip_puts_tool_results_first_in_the_next_user_turn():
    """tool_calls become tool_use blocks; tool messages lead the next user turn, merged with it."""
    plan = translate(chat(
        user("read both"),
        assistant("Reading.", ("call_a", "read_file", '{"path": "a.py"}'),
                  ("call_b", "read_file", "")),
        tool("call_a", "A"),
        user("also check b"),
        tool("call_b", [text("B")]),
        tools=[fn_tool("read_file", {"type": "object", "properties": {"path": {"type": "string"}}})],
    ))
    msgs = plan.body["messages"]
    assert msgs[1] == {"role": "assistant", "content": [
        text("Reading."),
        {"type": "tool_use", "id": "call_a", "name": "read_file", "input": {"path": "a.py"}},
        {"type": "tool_use", "id": "call_b", "name": "read_file", "input": {}},
    ]}
    assert msgs[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_a", "content": "A"},
        {"type": "tool_result", "tool_use_id": "call_b", "content": [text("B")]},
        text("also check b"),
    ]}


def test_tool_call_ids_with_unsupported_characters_are_sanitised_consistently():
    """Call ids outside [a-zA-Z0-9_-] are rewritten the same way in tool_use and tool_result."""
    plan = translate(chat(user(), assistant(None, ("call:1|x", "grep", "{}")), tool("call:1|x"),
                          tools=[fn_tool("grep")]))
    assert plan.body["messages"][1]["content"][0]["id"] == "call_1_x"
    assert plan.body["messages"][2]["content"][0]["tool_use_id"] == "call_1_x"


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", "42"], ids=["broken", "array", "number"])
def test_tool_call_arguments_that_are_not_a_json_object_are_rejected(arguments):
    """Unparseable or non-object tool arguments raise InvalidRequest naming the tool call."""
    with pytest.raises(InvalidRequest) as err:
        chat_to_anthropic(chat(user(), assistant(None, ("call_9", "edit", arguments)), tool("call_9")),
                          SONNET)
    assert err.value.param == "messages[1].tool_calls[0].function.arguments"
    assert "call_9" in err.value.message and "edit" in err.value.message


def test_unanswered_tool_call_is_rejected_like_openai_does():
    """An assistant tool call without a following tool message raises InvalidRequest."""
    with pytest.raises(InvalidRequest) as err:
        chat_to_anthropic(chat(user(), assistant(None, ("call_1", "grep", "{}")), user("never mind")),
                          SONNET)
    assert err.value.param == "messages[1]"


def test_tool_message_without_matching_call_is_rejected():
    """A tool message answering no pending tool call raises InvalidRequest."""
    with pytest.raises(InvalidRequest) as err:
        chat_to_anthropic(chat(user(), tool("call_x")), SONNET)
    assert err.value.param == "messages[1].tool_call_id"


MEDIA_CASES = [
    pytest.param({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                 {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                              "data": PNG_B64}}, id="data-url-png"),
    pytest.param({"type": "image_url", "image_url": f"data:image/jpg;base64,{PNG_B64}"},
                 {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                              "data": PNG_B64}}, id="bare-string-jpg-alias"),
    pytest.param({"type": "image_url", "image_url": {"url": "https://example.com/cat.png",
                                                     "detail": "high"}},
                 {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                 id="https-url"),
    pytest.param({"type": "image_url", "image_url": {"url": f"data:application/pdf;base64,{PDF_B64}"}},
                 {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                 "data": PDF_B64}}, id="pdf-data-url"),
    pytest.param({"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF_B64}",
                                           "filename": "spec.pdf"}},
                 {"type": "document", "title": "spec.pdf",
                  "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64}},
                 id="file-part-pdf"),
    pytest.param({"type": "file", "file": {"file_data": PDF_B64}},
                 {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                 "data": PDF_B64}}, id="file-part-bare-base64"),
    pytest.param({"type": "file", "file": {"file_data": "data:text/plain;base64,aGVsbG8="}},
                 {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                 "data": "hello"}}, id="file-part-text"),
]


@pytest.mark.parametrize(("part", "block"), MEDIA_CASES)
def test_user_media_parts_become_image_or_document_blocks(part, block):
    """Images (data URL or http URL), PDFs and text files map to Anthropic image/document blocks."""
    plan = translate(chat(user([text("look"), part])))
    assert plan.body["messages"][0]["content"] == [text("look"), block]


@pytest.mark.parametrize(("part", "param"), [
    pytest.param({"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
                 "messages[0].content[0].type", id="audio"),
    pytest.param({"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}},
                 "messages[0].content[0].image_url.url", id="unsupported-mime"),
    pytest.param({"type": "image_url", "image_url": {"url": "ftp://host/a.png"}},
                 "messages[0].content[0].image_url.url", id="ftp-url"),
    pytest.param({"type": "file", "file": {"file_id": "file-123"}},
                 "messages[0].content[0].file.file_data", id="file-id"),
    pytest.param({"type": "video"}, "messages[0].content[0].type", id="unknown-part"),
])
def test_unsupported_user_parts_are_rejected(part, param):
    """Audio, unknown media types, non-http URLs, file ids and unknown parts raise InvalidRequest."""
    with pytest.raises(InvalidRequest) as err:
        chat_to_anthropic(chat(user([part])), SONNET)
    assert err.value.param == param


def test_empty_content_is_never_sent():
    """Whitespace-only text is dropped and a message left empty becomes "..."."""
    plan = translate(chat(user("  "), assistant(""), user([text(""), text("\n")]), assistant("ok"),
                          user("go")))
    msgs = plan.body["messages"]
    assert msgs[0]["content"] == msgs[1]["content"] == msgs[2]["content"] == [text(PLACEHOLDER_TEXT)]


def test_conversation_starting_with_assistant_gets_a_user_turn_first():
    """A conversation opening with an assistant message is prefixed with a user "..." turn."""
    plan = translate(chat({"role": "system", "content": "s"}, assistant("Hello!"), user("hi")))
    assert plan.body["messages"][0] == {"role": "user", "content": [text(PLACEHOLDER_TEXT)]}


def test_final_assistant_message_loses_trailing_whitespace():
    """A final assistant (prefill) message is right-stripped; an empty one is dropped."""
    plan = translate(chat(user(), assistant("The answer is \n")))
    assert plan.body["messages"][-1]["content"] == [text("The answer is")]
    plan = translate(chat(user(), assistant("   ")))
    assert [m["role"] for m in plan.body["messages"]] == ["user"]


def test_only_system_messages_still_produce_a_user_turn():
    """A request with only system messages gets a placeholder user turn."""
    plan = translate(chat({"role": "system", "content": "s"}))
    assert plan.body["messages"] == [{"role": "user", "content": [text(PLACEHOLDER_TEXT)]}]


def test_tool_history_without_tools_gets_minimal_definitions_and_choice_none():
    """tool_calls in history but no `tools`: minimal definitions are synthesised and tool_choice is none."""
    plan = translate(chat(user(), assistant(None, ("c1", "grep", "{}"), ("c2", "edit", "{}"),
                                            ("c3", "grep", "{}")),
                          tool("c1"), tool("c2"), tool("c3"), user("thanks")))
    assert [t["name"] for t in plan.body["tools"]] == ["grep", "edit"]
    assert all(t["input_schema"]["type"] == "object" for t in plan.body["tools"])
    assert plan.body["tool_choice"] == {"type": "none"}


# --------------------------------------------------------------------------- request: parameters

def test_model_stream_and_requested_model():
    """body.model is the upstream id, stream is copied, the client's model name is kept for echoing."""
    plan = translate(chat(user(), stream=True, stream_options={"include_usage": True}))
    assert plan.body["model"] == SONNET.upstream_id
    assert plan.body["stream"] is True and plan.stream is True and plan.include_usage is True
    assert plan.requested_model == "gw-sonnet"
    assert "stream_options" not in plan.body and plan.dropped_params == []


@pytest.mark.parametrize(("params", "kwargs", "expected"), [
    pytest.param({}, {}, 16000, id="absent-uses-model-max"),
    pytest.param({}, {"default_max_tokens": 4096}, 4096, id="absent-uses-default"),
    pytest.param({"max_tokens": 500}, {}, 500, id="max-tokens"),
    pytest.param({"max_tokens": 500, "max_completion_tokens": 700}, {}, 700,
                 id="max-completion-tokens-wins"),
    pytest.param({"max_tokens": 999_999}, {}, 16000, id="clamped"),
    pytest.param({}, {"default_max_tokens": 999_999}, 16000, id="default-clamped"),
])
def test_max_tokens(params, kwargs, expected):
    """max_completion_tokens ?? max_tokens ?? default, clamped to the model's max output."""
    assert translate(chat(user(), **params), **kwargs).body["max_tokens"] == expected


@pytest.mark.parametrize("value", [0, -5, "100", 1.5, True], ids=["zero", "negative", "string",
                                                                  "float", "bool"])
def test_invalid_max_tokens_is_rejected(value):
    """A max_tokens that is not an integer >= 1 raises InvalidRequest with param max_tokens."""
    with pytest.raises(InvalidRequest) as err:
        chat_to_anthropic(chat(user(), max_tokens=value), SONNET)
    assert err.value.param == "max_tokens"


@pytest.mark.parametrize(("stop", "expected"), [
    pytest.param("END", ["END"], id="string"),
    pytest.param(["END", "  ", "\n\nHuman:"], ["END", "\n\nHuman:"], id="list-drops-whitespace"),
    pytest.param([" ", ""], None, id="all-whitespace"),
])
def test_stop_becomes_stop_sequences(stop, expected):
    """stop (string or list) becomes stop_sequences without whitespace-only entries."""
    assert translate(chat(user(), stop=stop)).body.get("stop_sequences") == expected


@pytest.mark.parametrize(("temperature", "expected"), [(0, 0), (0.7, 0.7), (1.5, 1), (2, 1)],
                         ids=["zero", "inside", "above-one", "openai-max"])
def test_temperature_is_clamped_to_anthropic_range(temperature, expected):
    """OpenAI's 0–2 temperature is clamped to Anthropic's 0–1; top_p passes through."""
    body = translate(chat(user(), temperature=temperature, top_p=0.9)).body
    assert body["temperature"] == expected and body["top_p"] == 0.9


@pytest.mark.parametrize(("choice", "expected"), [
    pytest.param("auto", {"type": "auto"}, id="auto"),
    pytest.param("none", {"type": "none"}, id="none"),
    pytest.param("required", {"type": "any"}, id="required"),
    pytest.param({"type": "function", "function": {"name": "grep"}}, {"type": "tool", "name": "grep"},
                 id="named"),
    pytest.param({"type": "function", "name": "grep"}, {"type": "tool", "name": "grep"},
                 id="named-flat"),
])
def test_tool_choice_variants(choice, expected):
    """auto/none/required/named tool_choice map to auto/none/any/tool."""
    plan = translate(chat(user(), tools=[fn_tool("grep")], tool_choice=choice))
    assert plan.body["tool_choice"] == expected
    assert plan.body["tools"] == [{"name": "grep", "description": "grep tool",
                                   "input_schema": {"type": "object", "properties": {}}}]


@pytest.mark.parametrize("choice", [{"type": "function", "function": {"name": "nope"}}, "sometimes"],
                         ids=["unknown-tool", "unknown-mode"])
def test_bad_tool_choice_is_rejected(choice):
    """A tool_choice naming no offered tool, or an unknown mode, raises InvalidRequest."""
    with pytest.raises(InvalidRequest) as err:
        chat_to_anthropic(chat(user(), tools=[fn_tool("grep")], tool_choice=choice), SONNET)
    assert err.value.param == "tool_choice"


@pytest.mark.parametrize(("choice", "expected"), [
    pytest.param(None, {"type": "auto", "disable_parallel_tool_use": True}, id="absent-creates-auto"),
    pytest.param("required", {"type": "any", "disable_parallel_tool_use": True}, id="required"),
    pytest.param("none", {"type": "none"}, id="none-untouched"),
])
def test_parallel_tool_calls_false_disables_parallel_tool_use(choice, expected):
    """parallel_tool_calls=false sets disable_parallel_tool_use on tool_choice (not on none)."""
    params = {"tool_choice": choice} if choice else {}
    plan = translate(chat(user(), tools=[fn_tool("grep")], parallel_tool_calls=False, **params))
    assert plan.body["tool_choice"] == expected


def test_tool_parameters_without_type_get_object_type():
    """A function's parameters schema lacking `type` is given type object."""
    plan = translate(chat(user(), tools=[fn_tool("grep", {"properties": {"q": {"type": "string"}}})]))
    assert plan.body["tools"][0]["input_schema"] == {"type": "object",
                                                     "properties": {"q": {"type": "string"}}}


def test_non_function_tools_are_dropped_and_reported():
    """Tool types Claude cannot take (e.g. custom) are dropped and 'tools' is reported."""
    plan = translate(chat(user(), tools=[fn_tool("grep"), {"type": "custom", "custom": {"name": "x"}}]))
    assert [t["name"] for t in plan.body["tools"]] == ["grep"]
    assert plan.dropped_params == ["tools"]


@pytest.mark.parametrize(("params", "user_id", "dropped"), [
    pytest.param({"user": "u-42"}, "u-42", [], id="user"),
    pytest.param({"safety_identifier": "hash-1"}, "hash-1", [], id="safety-identifier"),
    pytest.param({"user": "me@example.com"}, None, ["user"], id="email-dropped"),
    pytest.param({"user": "+1 (555) 123-4567"}, None, ["user"], id="phone-dropped"),
])
def test_user_becomes_metadata_user_id(params, user_id, dropped):
    """`user` or `safety_identifier` becomes metadata.user_id unless it looks like PII."""
    plan = translate(chat(user(), **params))
    assert plan.body.get("metadata") == ({"user_id": user_id} if user_id else None)
    assert plan.dropped_params == dropped


def test_unsupported_openai_params_are_dropped_and_reported():
    """Params Claude lacks are not sent and are listed in dropped_params; false/None ones are not."""
    params = {"logprobs": True, "top_logprobs": 2, "logit_bias": {"1": 2}, "seed": 7,
              "presence_penalty": 0.5, "frequency_penalty": 0.1, "store": False, "metadata": {"a": "b"},
              "prediction": {"type": "content", "content": "x"}, "modalities": ["text"],
              "audio": None, "service_tier": "auto", "verbosity": "low",
              "web_search_options": {}, "functions": [{"name": "f"}], "function_call": "auto"}
    plan = translate(chat(user(), **params))
    assert plan.dropped_params == ["logprobs", "top_logprobs", "logit_bias", "seed",
                                   "presence_penalty", "frequency_penalty", "metadata", "prediction",
                                   "modalities", "service_tier", "verbosity", "web_search_options",
                                   "functions", "function_call"]
    assert set(plan.body) == {"model", "max_tokens", "messages", "stream"}


@pytest.mark.parametrize("n", [None, 1], ids=["absent", "one"])
def test_n_of_one_is_accepted(n):
    """n absent or 1 is fine: a valid request (translate checks it), with no n sent upstream
    and none reported as dropped."""
    plan = translate(chat(user(), n=n))
    assert "n" not in plan.body and "n" not in plan.dropped_params
    assert len(plan.body["messages"]) == 1 and plan.body["messages"][0]["role"] == "user"


def test_n_above_one_is_rejected():
    """n > 1 raises InvalidRequest with param n."""
    with pytest.raises(InvalidRequest, match="n > 1 is not supported") as err:
        chat_to_anthropic(chat(user(), n=2), SONNET)
    assert err.value.param == "n"


@pytest.mark.parametrize(("body", "param"), [
    pytest.param({"model": "m", "messages": "hi"}, "messages", id="messages-not-list"),
    pytest.param({"model": "m", "messages": []}, "messages", id="messages-empty"),
    pytest.param({"messages": [user()]}, "model", id="model-missing"),
    pytest.param(chat(user(), "hello"), "messages[1]", id="message-not-object"),
    pytest.param(chat(user(), {"content": "x"}), "messages[1].role", id="role-missing"),
    pytest.param(chat({"role": "robot", "content": "x"}), "messages[0].role", id="role-unknown"),
    pytest.param(chat(user(), user(42), user()), "messages[1].content", id="content-number"),
    pytest.param(chat(user({"type": "text"})), "messages[0].content", id="content-object"),
    pytest.param(chat(user([{"type": "text", "text": 3}])), "messages[0].content[0].text",
                 id="text-part-not-string"),
    pytest.param(chat({"role": "system", "content": [{"type": "image_url"}]}),
                 "messages[0].content[0].type", id="system-non-text-part"),
    pytest.param(chat(user(), {"role": "assistant", "tool_calls": "x"}),
                 "messages[1].tool_calls", id="tool-calls-not-list"),
    pytest.param(chat(user(), {"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}),
                 "messages[1].tool_calls[0].id", id="tool-call-without-id"),
    pytest.param(chat(user(), tools={"a": 1}), "tools", id="tools-not-list"),
    pytest.param(chat(user(), tools=[{"type": "function", "function": {}}]),
                 "tools[0].function.name", id="tool-without-name"),
    pytest.param(chat(user(), tools=[fn_tool("a"), fn_tool("a")]), "tools[1].function.name",
                 id="duplicate-tool"),
    pytest.param(chat(user(), stop=5), "stop", id="stop-number"),
    pytest.param(chat(user(), stop=["a", 5]), "stop[1]", id="stop-list-number"),
    pytest.param(chat(user(), temperature="hot"), "temperature", id="temperature-string"),
    pytest.param(chat(user(), stream="yes"), "stream", id="stream-string"),
    pytest.param(chat(user(), reasoning_effort="extreme"), "reasoning_effort", id="effort-unknown"),
    pytest.param(chat(user(), reasoning_effort=["high"]), "reasoning_effort", id="effort-list"),
    pytest.param(chat(user(), response_format={"type": "yaml"}), "response_format.type",
                 id="response-format-unknown"),
    pytest.param(chat(user(), parallel_tool_calls="no"), "parallel_tool_calls", id="parallel-string"),
])
def test_wrong_types_raise_invalid_request_with_param(body, param):
    """Malformed fields raise InvalidRequest whose param names the field."""
    with pytest.raises(InvalidRequest) as err:
        chat_to_anthropic(body, SONNET)
    assert err.value.param == param


# --------------------------------------------------------------------------- request: reasoning

@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("medium", 2048), ("high", 4096),
                                                 ("xhigh", 8192), ("max", 16384)],
                         ids=["low", "medium", "high", "xhigh", "max"])
def test_reasoning_effort_sets_thinking_budget(effort, budget):
    """reasoning_effort maps to a thinking budget; max_tokens stays above it."""
    limits = model("claude-opus-4-20250514", max_output=64000, supports_thinking=True)
    plan = translate(chat(user(), reasoning_effort=effort, max_tokens=100), limits)
    assert plan.body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert plan.body["max_tokens"] == budget + 1024


@pytest.mark.parametrize("effort", ["none", "minimal"])
def test_reasoning_effort_none_or_minimal_means_no_thinking(effort):
    """reasoning_effort none/minimal sends no thinking and drops nothing."""
    plan = translate(chat(user(), reasoning_effort=effort))
    assert "thinking" not in plan.body and plan.dropped_params == []


def test_large_max_tokens_is_kept_with_thinking():
    """A max_tokens already above budget + 1024 is not changed."""
    plan = translate(chat(user(), reasoning_effort="low", max_tokens=9000))
    assert plan.body["max_tokens"] == 9000


@pytest.mark.parametrize(("max_output", "budget"), [(3000, 1976), (1500, 1024)],
                         ids=["budget-lowered", "budget-at-floor"])
def test_budget_is_lowered_when_max_tokens_is_clamped(max_output, budget):
    """When the model's max output caps max_tokens, the budget is lowered below it (floor 1024)."""
    limits = model("small", max_output=max_output, supports_thinking=True)
    plan = translate(chat(user(), reasoning_effort="high"), limits)
    assert plan.body["max_tokens"] == max_output
    assert plan.body["thinking"]["budget_tokens"] == budget


def test_thinking_is_skipped_when_max_output_leaves_no_room():
    """A model whose max output is at most 1024 cannot think; reasoning_effort is reported dropped."""
    limits = model("tiny", max_output=1024, supports_thinking=True)
    plan = translate(chat(user(), reasoning_effort="low"), limits)
    assert "thinking" not in plan.body and plan.dropped_params == ["reasoning_effort"]


def test_adaptive_models_get_adaptive_thinking_and_effort():
    """Adaptive-thinking models get thinking {type: adaptive} plus output_config.effort."""
    plan = translate(chat(user(), reasoning_effort="medium"), ADAPTIVE)
    assert plan.body["thinking"] == {"type": "adaptive"}
    assert plan.body["output_config"] == {"effort": "medium"}


def test_thinking_drops_sampling_params_and_unforces_tool_choice():
    """With thinking on, temperature/top_p/top_k are dropped and a forced tool_choice becomes auto."""
    plan = translate(chat(user(), reasoning_effort="low", temperature=0.2, top_p=0.5, top_k=5,
                          tools=[fn_tool("grep")], tool_choice="required", parallel_tool_calls=False))
    assert not {"temperature", "top_p", "top_k"} & set(plan.body)
    assert plan.body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert plan.dropped_params == ["temperature", "top_p", "top_k"]


def test_thinking_on_model_without_support_is_ignored():
    """reasoning_effort on a model without thinking support is ignored and reported."""
    plan = translate(chat(user(), reasoning_effort="high", temperature=0.3), HAIKU)
    assert "thinking" not in plan.body and plan.body["temperature"] == 0.3
    assert plan.dropped_params == ["reasoning_effort"]


def test_thinking_is_disabled_when_last_assistant_message_has_tool_calls():
    """Thinking is turned off mid tool loop (no signed thinking block to echo) and reported."""
    plan = translate(chat(user(), assistant(None, ("c1", "grep", "{}")), tool("c1"),
                          tools=[fn_tool("grep")], reasoning_effort="high"))
    assert "thinking" not in plan.body and plan.dropped_params == ["reasoning_effort"]


def test_thinking_stays_on_once_the_tool_loop_is_over():
    """An earlier tool loop followed by a plain assistant answer does not disable thinking."""
    plan = translate(chat(user(), assistant(None, ("c1", "grep", "{}")), tool("c1"),
                          assistant("done"), user("next"), tools=[fn_tool("grep")],
                          reasoning_effort="low"))
    assert plan.body["thinking"]["type"] == "enabled"


def test_thinking_is_disabled_with_an_assistant_prefill():
    """A final assistant message (prefill) is incompatible with thinking, which is dropped."""
    plan = translate(chat(user(), assistant("{"), reasoning_effort="low"))
    assert "thinking" not in plan.body and plan.dropped_params == ["reasoning_effort"]


def test_force_thinking_turns_thinking_on():
    """force_thinking (the -thinking suffix) enables thinking even without reasoning_effort."""
    plan = translate(chat(user()), force_thinking=True)
    assert plan.body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    plan = translate(chat(user(), reasoning_effort="low"), force_thinking=True)
    assert plan.body["thinking"]["budget_tokens"] == 1024


@pytest.mark.parametrize(("model", "expected"), [
    ("claude-4-sonnet-thinking", ("claude-4-sonnet", True)),
    ("Claude-4-Sonnet-THINKING", ("Claude-4-Sonnet", True)),
    ("claude-4-sonnet", ("claude-4-sonnet", False)),
    ("claude-4-sonnet-think", ("claude-4-sonnet-think", False)),
    ("-thinking", ("-thinking", False)),
], ids=["suffix", "case-insensitive", "none", "think-is-not-thinking", "suffix-only"])
def test_split_thinking_suffix(model, expected):
    """Only a trailing -thinking (any case) is split off."""
    assert split_thinking_suffix(model) == expected


# --------------------------------------------------------------------------- request: JSON mode

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.mark.parametrize(("response_format", "schema"), [
    pytest.param({"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA, "strict": True}},
                 SCHEMA, id="json-schema"),
    pytest.param({"type": "json_object"}, {"type": "object"}, id="json-object"),
])
def test_response_format_uses_a_forced_json_tool(response_format, schema):
    """JSON response formats add the json_tool_call tool and force it."""
    plan = translate(chat(user(), response_format=response_format))
    assert plan.json_mode == "tool"
    assert plan.body["tools"][-1]["name"] == JSON_TOOL_NAME
    assert plan.body["tools"][-1]["input_schema"] == schema
    assert plan.body["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}


def test_response_format_text_changes_nothing():
    """response_format text adds no tool and no JSON mode."""
    plan = translate(chat(user(), response_format={"type": "text"}))
    assert plan.json_mode is None and "tools" not in plan.body


def test_json_tool_is_not_forced_with_thinking():
    """With thinking on, the JSON tool is offered unforced and a system instruction asks for it."""
    plan = translate(chat(user(), response_format={"type": "json_object"}, reasoning_effort="low"))
    assert "tool_choice" not in plan.body
    assert JSON_TOOL_NAME in plan.body["system"][-1]["text"]


def test_json_tool_is_not_forced_alongside_client_tools():
    """With client tools, the JSON tool is added unforced so the client's tools stay callable."""
    plan = translate(chat(user(), tools=[fn_tool("grep")], tool_choice="auto",
                          response_format={"type": "json_object"}))
    assert [t["name"] for t in plan.body["tools"]] == ["grep", JSON_TOOL_NAME]
    assert plan.body["tool_choice"] == {"type": "auto"}


def test_json_schema_with_non_object_root_is_rejected():
    """A JSON schema whose root is not an object raises InvalidRequest."""
    with pytest.raises(InvalidRequest) as err:
        chat_to_anthropic(chat(user(), response_format={"type": "json_schema", "json_schema": {
            "name": "l", "schema": {"type": "array"}}}), SONNET)
    assert err.value.param == "response_format.json_schema.schema"


# --------------------------------------------------------------------------- Responses-shaped bodies

def test_responses_shaped_body_is_converted_to_chat():
    """Cursor's Responses-API body (input items, instructions, flat tools…) becomes a Chat body."""
    body = {
        "model": "gw-sonnet", "instructions": "You are Cursor.", "store": False,
        "previous_response_id": "resp_1", "truncation": "auto", "include": ["reasoning"],
        "max_output_tokens": 2000, "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "out", "schema": SCHEMA}},
        "tools": [{"type": "function", "name": "read_file", "description": "Read",
                   "parameters": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "function", "name": "read_file"},
        "stream": True,
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "read a.py"},
                                         {"type": "input_image", "image_url": "https://x/y.png"}]},
            {"type": "reasoning", "summary": []},
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "Reading."}]},
            {"type": "function_call", "call_id": "call_1", "name": "read_file", "arguments": "{}"},
            {"type": "function_call", "call_id": "call_2", "name": "read_file", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "print(1)"},
            {"type": "function_call_output", "call_id": "call_2", "output": "print(2)"},
        ],
    }
    converted = responses_to_chat(body)
    assert converted == {
        "model": "gw-sonnet", "stream": True, "max_tokens": 2000, "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": SCHEMA}},
        "tools": [{"type": "function", "function": {
            "name": "read_file", "description": "Read",
            "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": {"type": "function", "function": {"name": "read_file"}},
        "messages": [
            {"role": "system", "content": "You are Cursor."},
            {"role": "user", "content": [text("read a.py"),
                                         {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            {"role": "assistant", "content": [text("Reading.")], "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "read_file", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "print(1)"},
            {"role": "tool", "tool_call_id": "call_2", "content": "print(2)"},
        ],
    }
    assert "input" in body  # the argument is not modified
    translate(converted)


def test_responses_string_input_becomes_one_user_message():
    """A string `input` becomes a single user message."""
    assert responses_to_chat({"model": "m", "input": "hi"})["messages"] == [user("hi")]


@pytest.mark.parametrize("body", [
    pytest.param({"model": "m", "messages": [user()], "input": "ignored"}, id="has-messages"),
    pytest.param({"model": "m", "messages": [user()]}, id="plain-chat"),
])
def test_chat_bodies_are_returned_unchanged(body):
    """Bodies with `messages` (or without `input`) are returned as they are."""
    assert responses_to_chat(body) is body


def test_unknown_responses_item_is_rejected():
    """An input item type with no Chat equivalent raises InvalidRequest naming it."""
    with pytest.raises(InvalidRequest) as err:
        responses_to_chat({"model": "m", "input": [{"type": "computer_call"}]})
    assert err.value.param == "input[0].type"


# --------------------------------------------------------------------------- non-streaming response

PLAN = ChatPlan(body={}, stream=False, include_usage=False, json_mode=None, dropped_params=[],
                requested_model="gw-sonnet")
JSON_PLAN = ChatPlan(body={}, stream=False, include_usage=False, json_mode="tool", dropped_params=[],
                     requested_model="gw-sonnet")


def message(*content: dict, stop_reason="end_turn", **usage) -> dict:
    return {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
            "content": list(content), "stop_reason": stop_reason,
            "usage": {"input_tokens": 10, "output_tokens": 5, **usage}}


def test_text_response():
    """Text blocks are joined into message.content; envelope fields follow the OpenAI shape."""
    out = anthropic_to_chat(message(text("Hello "), text("world")), PLAN, created=123)
    assert out == {
        "id": "chatcmpl-msg_01", "object": "chat.completion", "created": 123, "model": "gw-sonnet",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello world"},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                  "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0}},
    }


def test_tool_use_response():
    """tool_use blocks become tool_calls with JSON string arguments; content null without text."""
    out = anthropic_to_chat(message({"type": "tool_use", "id": "toolu_1", "name": "read_file",
                                     "input": {"path": "a.py"}}, stop_reason="tool_use"),
                            PLAN, completion_id="chatcmpl-fixed")
    choice = out["choices"][0]
    assert out["id"] == "chatcmpl-fixed" and choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [{"id": "toolu_1", "type": "function", "function": {
        "name": "read_file", "arguments": '{"path":"a.py"}'}}]


def test_thinking_response_becomes_reasoning_content():
    """Thinking text is returned as message.reasoning_content; signatures are not exposed."""
    out = anthropic_to_chat(message({"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
                                    {"type": "redacted_thinking", "data": "x"}, text("42")), PLAN)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "42",
                                            "reasoning_content": "Hmm."}


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), (None, "stop"), ("brand_new", "stop"),
], ids=lambda v: str(v))
def test_finish_reason_mapping(stop_reason, finish):
    """Anthropic stop_reason maps to the OpenAI finish_reason table (unknown → stop)."""
    assert anthropic_to_chat(message(text("x"), stop_reason=stop_reason),
                             PLAN)["choices"][0]["finish_reason"] == finish


def test_json_mode_response_unwraps_the_json_tool():
    """In JSON mode the json_tool_call input becomes content, with no tool_calls and finish stop."""
    out = anthropic_to_chat(message(text("Here:"), {"type": "tool_use", "id": "t", "name": JSON_TOOL_NAME,
                                                    "input": {"city": "Oslo"}}, stop_reason="tool_use"),
                            JSON_PLAN)
    choice = out["choices"][0]
    assert json.loads(choice["message"]["content"]) == {"city": "Oslo"}
    assert "tool_calls" not in choice["message"] and choice["finish_reason"] == "stop"


def test_cache_usage_counts_in_prompt_tokens():
    """prompt_tokens includes cache writes and reads; details report both."""
    usage = anthropic_to_chat(message(text("x"), cache_creation_input_tokens=100,
                                      cache_read_input_tokens=2000,
                                      output_tokens_details={"thinking_tokens": 3}), PLAN)["usage"]
    assert usage == {"prompt_tokens": 2110, "completion_tokens": 5, "total_tokens": 2115,
                     "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 100},
                     "completion_tokens_details": {"reasoning_tokens": 3}}


# --------------------------------------------------------------------------- streaming

def frames(raw: bytes) -> list:
    """Split SSE bytes into parsed JSON payloads ("[DONE]" kept as a string)."""
    out = []
    for frame in raw.split(b"\n\n"):
        if not frame:
            continue
        assert frame.startswith(b"data: ")
        payload = frame[len(b"data: "):]
        out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def run_stream(events: list[tuple[str, dict]], *, include_usage=True, json_mode=None):
    plan = ChatPlan(body={}, stream=True, include_usage=include_usage, json_mode=json_mode,
                    dropped_params=[], requested_model="gw-sonnet")
    translator = ChatStreamTranslator(plan, completion_id="chatcmpl-1", created=99)
    raw = b"".join(translator.feed(name, data) for name, data in events)
    return translator, raw, frames(raw)


def block_start(index, block):
    return "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}


def delta(index, **d):
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}


def block_stop(index):
    return "content_block_stop", {"type": "content_block_stop", "index": index}


MESSAGE_START = ("message_start", {"type": "message_start", "message": {
    "id": "msg_1", "model": "claude-x", "content": [], "stop_reason": None,
    "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 400,
              "output_tokens": 1}}})
MESSAGE_STOP = ("message_stop", {"type": "message_stop"})


def message_delta(stop_reason, **usage):
    return "message_delta", {"type": "message_delta",
                             "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                             "usage": usage}


TOOL_STREAM = [
    MESSAGE_START,
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    ("ping", {"type": "ping"}),
    delta(0, type="thinking_delta", thinking="Need files."),
    delta(0, type="signature_delta", signature="EqQB"),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    delta(1, type="text_delta", text="Checking."),
    block_stop(1),
    block_start(2, {"type": "tool_use", "id": "toolu_a", "name": "read_file", "input": {}}),
    delta(2, type="input_json_delta", partial_json=""),
    delta(2, type="input_json_delta", partial_json='{"path": "a'),
    delta(2, type="input_json_delta", partial_json='.py"}'),
    block_stop(2),
    block_start(3, {"type": "tool_use", "id": "toolu_b", "name": "list_dir", "input": {}}),
    block_stop(3),
    message_delta("tool_use", output_tokens=95),
    MESSAGE_STOP,
]


def test_stream_translates_thinking_text_and_two_tool_calls():
    """Thinking, text and tool calls stream as OpenAI chunks with tool indexes 0 and 1, usage, then [DONE]."""
    translator, _, out = run_stream(TOOL_STREAM)
    chunks, usage_chunk, done = out[:-2], out[-2], out[-1]
    assert done == "[DONE]" and translator.done
    for chunk in chunks:
        assert chunk["id"] == "chatcmpl-1" and chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == 99 and chunk["model"] == "gw-sonnet" and chunk["usage"] is None
        assert chunk["choices"][0]["index"] == 0 and chunk["choices"][0]["logprobs"] is None
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert {"reasoning_content": "Need files."} in deltas and {"content": "Checking."} in deltas
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    starts = [tc for tc in calls if "id" in tc]
    assert [(tc["index"], tc["id"], tc["function"]["name"]) for tc in starts] == [
        (0, "toolu_a", "read_file"), (1, "toolu_b", "list_dir")]
    arguments = {i: "".join(tc["function"]["arguments"] for tc in calls if tc["index"] == i)
                 for i in (0, 1)}
    assert json.loads(arguments[0]) == {"path": "a.py"} and json.loads(arguments[1]) == {}
    assert all(tc["function"]["arguments"] for tc in calls if "id" not in tc)  # no empty fragments
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["tool_calls"]
    assert deltas[-1] == {}
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["prompt_tokens"] == 412
    assert usage_chunk["usage"]["completion_tokens"] == 95


def test_stream_ping_and_signature_produce_nothing():
    """ping events and signature deltas emit no bytes."""
    translator, _, _ = run_stream([MESSAGE_START])
    assert translator.feed("ping", {"type": "ping"}) == b""
    assert translator.feed(*delta(0, type="signature_delta", signature="x")) == b""
    assert KEEPALIVE == b": keepalive\n\n"


def test_stream_error_event_ends_the_stream_without_done():
    """An upstream error event becomes an OpenAI error frame and the translator is finished."""
    translator, raw, out = run_stream([
        MESSAGE_START, block_start(0, {"type": "text", "text": ""}), delta(0, type="text_delta", text="Hi"),
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ])
    assert out[-1] == {"error": {"message": "Overloaded", "type": "overloaded_error", "code": None,
                                 "param": None}}
    assert b"[DONE]" not in raw and translator.done
    assert translator.feed(*MESSAGE_STOP) == b""


def test_stream_without_include_usage_has_no_usage_fields():
    """Without include_usage, chunks carry no usage key and no usage chunk is sent."""
    _, _, out = run_stream([MESSAGE_START, message_delta("end_turn", output_tokens=3), MESSAGE_STOP],
                           include_usage=False)
    assert out[-1] == "[DONE]" and len(out) == 3
    assert all("usage" not in c for c in out[:-1])


def test_stream_usage_keeps_latest_counters_without_summing():
    """The tracker holds the latest value of each counter across message_start and message_deltas."""
    translator, _, out = run_stream([
        MESSAGE_START, message_delta(None, output_tokens=10),
        message_delta("end_turn", output_tokens=30, input_tokens=12), MESSAGE_STOP])
    assert translator.tracker.reported == {"input_tokens": 12, "cache_creation_input_tokens": 0,
                                  "cache_read_input_tokens": 400, "output_tokens": 30}
    assert [c["choices"][0]["finish_reason"] for c in out[:-2]] == [None, "stop"]  # one finish chunk
    assert out[-2]["usage"]["completion_tokens"] == 30


def test_stream_json_mode_emits_tool_arguments_as_content():
    """In JSON mode the json_tool_call arguments stream as content and finish_reason is stop."""
    _, _, out = run_stream([
        MESSAGE_START,
        block_start(0, {"type": "text", "text": ""}), delta(0, type="text_delta", text="Sure:"),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "t", "name": JSON_TOOL_NAME, "input": {}}),
        delta(1, type="input_json_delta", partial_json='{"city":'),
        delta(1, type="input_json_delta", partial_json=' "Oslo"}'), block_stop(1),
        message_delta("tool_use", output_tokens=9), MESSAGE_STOP,
    ], json_mode="tool")
    chunks = out[:-2]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert json.loads(content) == {"city": "Oslo"}
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_stream_json_mode_releases_prose_when_no_json_tool_is_called():
    """In JSON mode, text is held back and sent before the finish chunk if the tool was never called."""
    _, _, out = run_stream([
        MESSAGE_START, block_start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text='{"a": '), delta(0, type="text_delta", text="1}"),
        block_stop(0), message_delta("end_turn", output_tokens=4), MESSAGE_STOP,
    ], json_mode="tool")
    assert [c["choices"][0]["delta"] for c in out[:-2]] == [
        {"role": "assistant", "content": ""}, {"content": '{"a": 1}'}, {}]


def test_stream_missing_message_delta_still_finishes():
    """A message_stop without a prior message_delta still sends a finish chunk (stop) before [DONE]."""
    _, _, out = run_stream([MESSAGE_START, MESSAGE_STOP], include_usage=False)
    assert out[-2]["choices"][0]["finish_reason"] == "stop" and out[-1] == "[DONE]"


# --------------------------------------------------------------------------- properties

TOOL_NAMES = ["read_file", "grep", "run-cmd", "edit"]
IMAGE_PARTS = [
    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
    {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF_B64}"}},
]
texts = st.sampled_from(["", " ", "\n\t", "hello", "trailing space ", "multi\nline\n"]) | st.text(max_size=12)
text_parts = texts.map(text)
user_content = st.one_of(texts, st.none(), st.lists(text_parts | st.sampled_from(IMAGE_PARTS), max_size=4))
assistant_content = st.one_of(texts, st.none(), st.lists(
    text_parts | texts.map(lambda s: {"type": "refusal", "refusal": s}), max_size=3))
system_message = st.builds(lambda role, content: {"role": role, "content": content},
                           st.sampled_from(["system", "developer"]),
                           texts | st.lists(text_parts, max_size=2))
arguments = st.sampled_from(["", "{}", '{"path": "a.py"}', '{"n": 1, "deep": {"x": [1]}}'])


@st.composite
def conversations(draw) -> list[dict]:
    """Plausible OpenAI histories: every tool call answered by tool messages right after it."""
    messages: list[dict] = []
    next_id = 0
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["user", "user", "assistant", "tool_loop", "system"]))
        if kind == "user":
            messages.append(user(draw(user_content)))
        elif kind == "system":
            messages.append(draw(system_message))
        elif kind == "assistant":
            messages.append(assistant(draw(assistant_content)))
        else:
            calls = []
            for _ in range(draw(st.integers(1, 3))):
                call_id = draw(st.sampled_from(["call_{}", "call:{}", "toolu_{}"])).format(next_id)
                next_id += 1
                calls.append((call_id, draw(st.sampled_from(TOOL_NAMES)), draw(arguments)))
            messages.append(assistant(draw(assistant_content), *calls))
            answers = draw(st.permutations([c[0] for c in calls]))
            for k, call_id in enumerate(answers):
                if k and draw(st.booleans()) and draw(st.booleans()):
                    messages.append(user(draw(user_content)))  # a user note between the results
                messages.append(tool(call_id, draw(texts | st.lists(text_parts, max_size=2))))
    if draw(st.booleans()):
        messages.append(user(draw(user_content)))  # usually the client's newest turn
    return messages


@st.composite
def chat_requests(draw) -> dict:
    body = chat(*draw(conversations()))
    if draw(st.booleans()):
        body["tools"] = [fn_tool(name, draw(st.sampled_from([None, {"type": "object", "properties": {}}])))
                         for name in TOOL_NAMES]
        body["tool_choice"] = draw(st.sampled_from([None, "auto", "none", "required",
                                                    {"type": "function", "function": {"name": "grep"}}]))
        body["parallel_tool_calls"] = draw(st.sampled_from([None, True, False]))
    optional = {
        "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh", "max"]),
        "stop": texts | st.lists(texts, max_size=3),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "max_tokens": st.integers(1, 100_000),
        "max_completion_tokens": st.integers(1, 100_000),
        "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"},
                                            {"type": "json_schema",
                                             "json_schema": {"name": "x", "schema": SCHEMA}}]),
        "user": st.sampled_from(["u1", "a@b.c"]),
        "stream": st.booleans(),
        "seed": st.integers(0, 10),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    return body


model_limits = st.builds(model, st.just("claude-x"), st.sampled_from([1024, 1500, 4096, 8000, 64000]),
                         st.booleans(), st.booleans())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chat_requests(), model_limits, st.booleans(), st.none() | st.integers(1, 50_000))
def test_any_plausible_chat_request_translates_to_a_valid_messages_request(body, limits, force, default):
    """Every plausible OpenAI request becomes a body the strict Messages validator accepts."""
    plan = chat_to_anthropic(body, limits, force_thinking=force, default_max_tokens=default)
    assert validate_request(plan.body) == []


@settings(max_examples=200, deadline=None)
@given(chat_requests(), model_limits, st.booleans(), st.none() | st.integers(1, 500_000))
def test_max_tokens_never_exceeds_the_model_limit(body, limits, force, default):
    """max_tokens is always between 1 and the model's max output, whatever was asked."""
    plan = chat_to_anthropic(body, limits, force_thinking=force, default_max_tokens=default)
    assert 1 <= plan.body["max_tokens"] <= limits.max_output
