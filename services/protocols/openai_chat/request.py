"""OpenAI Chat Completions request → Anthropic Messages request: pure, synchronous, no I/O.

`chat_model` resolves the model name (a Cursor-style `-thinking` suffix turns thinking on),
`prepare_chat` translates the body (`chat_to_anthropic`, PROTOCOL §7.1/§7.3) and produces the
bytes the relay forwards. Every malformed input raises `InvalidRequest` with `param` naming
the offending field.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import orjson

from services.core.errors import InvalidRequest
from services.core.types import Model
from services.gateway.catalog import CatalogService
from services.protocols.adapter import UpstreamRequest
from services.protocols.anthropic import estimate_input_tokens, unbounded_input

JSON_TOOL_NAME = "json_tool_call"
"""Synthetic tool carrying `response_format` JSON; its input becomes `message.content`."""

PLACEHOLDER_TEXT = "..."
"""Stands in for content that would otherwise be empty (Anthropic rejects empty messages)."""

THINKING_BUDGETS: dict[str, int] = {
    "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384,
}
NO_THINKING_EFFORTS = frozenset({"none", "minimal"})
FORCED_THINKING_EFFORT = "high"
"""Effort used for a `-thinking` model suffix when the client sent no usable reasoning_effort."""

MIN_THINKING_BUDGET = 1024
"""Anthropic's floor for `budget_tokens`; also the room kept for the visible answer."""

DROPPED_PARAMS = (
    "logprobs", "top_logprobs", "logit_bias", "seed", "presence_penalty", "frequency_penalty",
    "store", "metadata", "prediction", "modalities", "audio", "service_tier", "verbosity",
    "web_search_options", "functions", "function_call", "prompt_cache_key",
)
"""OpenAI request fields Claude has no equivalent for: not sent, reported in `dropped_params`."""

_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_EMPTY_SCHEMA: dict = {"type": "object", "properties": {}}
_UNSAFE_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_PHONE_LIKE = re.compile(r"^\+?[\d\s().-]{7,}$")


@dataclass
class ChatPlan:
    """A translated request: the upstream body plus what the response side needs to know."""

    body: dict
    stream: bool
    include_usage: bool
    json_mode: str | None
    dropped_params: list[str]
    requested_model: str


# --------------------------------------------------------------------------- small helpers

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def expect(value: Any, kind: type | tuple[type, ...], param: str, what: str) -> Any:
    """Return `value` if it is of `kind`, else raise InvalidRequest naming `param`."""
    if not isinstance(value, kind):
        raise InvalidRequest(f"'{param}' must be {what}.", param=param)
    return value


def _text_block(text: str, part: dict | None = None) -> dict | None:
    """A text block, or None for empty/whitespace-only text (Anthropic rejects those)."""
    if not text.strip():
        return None
    block = {"type": "text", "text": text}
    if part is not None and "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _safe_tool_id(tool_id: str) -> str:
    # Anthropic requires ^[a-zA-Z0-9_-]+$; some clients' call ids contain other characters.
    # The same mapping is applied to tool_calls and tool messages, so pairs still match.
    return _UNSAFE_ID_CHARS.sub("_", tool_id)


def split_thinking_suffix(model: str) -> tuple[str, bool]:
    """Split a Cursor-style `-thinking` suffix (case-insensitive): ("claude-4-sonnet", True)."""
    if model.lower().endswith("-thinking") and len(model) > len("-thinking"):
        return model[: -len("-thinking")], True
    return model, False


def chat_model(body: dict, catalog: CatalogService) -> tuple[Model, bool]:
    """The catalog model a chat body names, and whether its name asked for thinking.

    Raises InvalidRequest (no model name) or UnknownModel.
    """
    name = body.get("model")
    if not isinstance(name, str):
        raise InvalidRequest("model: field required (a model name string)", param="model")
    name, thinking = split_thinking_suffix(name)
    return catalog.resolve(name), thinking


def prepare_chat(body: dict, model: Model, *, force_thinking: bool = False) -> tuple[UpstreamRequest, ChatPlan]:
    """Translate a chat body for `model` into the request to forward and the plan its
    answer's translation follows. Raises InvalidRequest (with `param`) on bad input."""
    plan = chat_to_anthropic(body, model, force_thinking=force_thinking)
    plan.requested_model = model.id  # the docs show the normalised id in responses
    raw = orjson.dumps(plan.body)
    request = UpstreamRequest(model, raw, plan.stream, plan.body["max_tokens"],
                              estimate_input_tokens(len(raw), plan.body["messages"]),
                              unbounded_input(plan.body["messages"], plan.body.get("tools")))
    return request, plan


class _Conversation:
    """Builds Anthropic turns from OpenAI messages.

    Merges consecutive same-role messages, puts tool results first in their user turn, and
    enforces OpenAI's own pairing rule: every tool call is answered by exactly one tool message
    before the next assistant message.
    """

    def __init__(self) -> None:
        self.system: list[dict] = []
        self.turns: list[dict] = []
        self.tool_names: list[str] = []        # names used by history tool calls, in order
        self.last_assistant_has_tools = False
        self._leading_results = 0              # tool_result blocks at the head of the last turn
        self._open_calls: set[str] = set()     # tool_use ids not yet answered
        self._open_since = ""                  # param of the assistant message that opened them
        self._seen_ids: set[str] = set()

    def add(self, msg: Any, param: str) -> None:
        expect(msg, dict, param, "an object")
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            self.system.extend(_text_blocks(content, f"{param}.content"))
        elif role == "user":
            self._push("user", _user_blocks(content, f"{param}.content"))
        elif role == "assistant":
            self._add_assistant(msg, param)
        elif role == "tool":
            self._add_tool_result(msg, param)
        elif role is None:
            raise InvalidRequest("Each message needs a 'role'.", param=f"{param}.role")
        else:
            raise InvalidRequest(f"Unsupported message role {role!r}.", param=f"{param}.role")

    def _push(self, role: str, blocks: list[dict], *, leading: bool = False) -> None:
        if not self.turns or self.turns[-1]["role"] != role:
            self.turns.append({"role": role, "content": []})
            self._leading_results = 0
        content = self.turns[-1]["content"]
        if leading:
            content[self._leading_results:self._leading_results] = blocks
            self._leading_results += len(blocks)
        else:
            content.extend(blocks)

    def _add_assistant(self, msg: dict, param: str) -> None:
        self._require_answered()
        blocks = _assistant_text_blocks(msg.get("content"), f"{param}.content")
        tool_calls = msg.get("tool_calls")
        uses = [] if tool_calls is None else [
            self._tool_use(call, f"{param}.tool_calls[{k}]")
            for k, call in enumerate(expect(tool_calls, list, f"{param}.tool_calls", "a list"))]
        if uses:
            self._open_calls = {u["id"] for u in uses}
            self._open_since = param
        self.last_assistant_has_tools = bool(uses)
        self._push("assistant", blocks + uses)

    def _tool_use(self, call: Any, param: str) -> dict:
        expect(call, dict, param, "an object")
        if call.get("type", "function") != "function":
            raise InvalidRequest(f"Tool call type {call.get('type')!r} is not supported.",
                                 param=f"{param}.type")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest("Tool calls need a non-empty string 'id'.", param=f"{param}.id")
        fn = expect(call.get("function"), dict, f"{param}.function", "an object")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("Tool calls need a function name.", param=f"{param}.function.name")
        tool_id = _safe_tool_id(call_id)
        if tool_id in self._seen_ids:
            raise InvalidRequest(f"Duplicate tool call id {call_id!r}.", param=f"{param}.id")
        self._seen_ids.add(tool_id)
        if name not in self.tool_names:
            self.tool_names.append(name)
        return {"type": "tool_use", "id": tool_id, "name": name,
                "input": _parse_arguments(fn.get("arguments"), call_id, name,
                                          f"{param}.function.arguments")}

    def _add_tool_result(self, msg: dict, param: str) -> None:
        call_id = msg.get("tool_call_id")
        if not isinstance(call_id, str):
            raise InvalidRequest("Tool messages need a string 'tool_call_id'.",
                                 param=f"{param}.tool_call_id")
        tool_id = _safe_tool_id(call_id)
        if tool_id not in self._open_calls:
            raise InvalidRequest(
                f"Tool message {call_id!r} does not answer a tool call of the preceding "
                "assistant message (or answers it twice).", param=f"{param}.tool_call_id")
        self._open_calls.discard(tool_id)
        block: dict = {"type": "tool_result", "tool_use_id": tool_id}
        content = msg.get("content")
        if isinstance(content, str):
            if content.strip():
                block["content"] = content
        elif content is not None:
            parts = _user_blocks(content, f"{param}.content")
            if parts:
                block["content"] = parts
        self._push("user", [block], leading=True)

    def _require_answered(self) -> None:
        if self._open_calls:
            raise InvalidRequest(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'; unanswered: {', '.join(sorted(self._open_calls))}.",
                param=self._open_since)

    def finish(self) -> list[dict]:
        """Return the Anthropic `messages` list: starts with user, no empty turns."""
        self._require_answered()
        return normalise_turns(self.turns)


def normalise_turns(turns: list[dict]) -> list[dict]:
    """Anthropic `messages` from translated turns: a final assistant turn is a prefill, which
    may not end in whitespace (blank trailing text goes; an empty turn carries nothing and is
    dropped); no turn is empty; the first is the user's."""
    if turns and turns[-1]["role"] == "assistant":
        content = turns[-1]["content"]
        while content and content[-1]["type"] == "text" and not content[-1]["text"].strip():
            content.pop()
        if content and content[-1]["type"] == "text":
            content[-1]["text"] = content[-1]["text"].rstrip()
        if not content:
            turns.pop()
    for turn in turns:
        if not turn["content"]:
            turn["content"].append({"type": "text", "text": PLACEHOLDER_TEXT})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": PLACEHOLDER_TEXT}]})
    return turns


def _parse_arguments(arguments: Any, call_id: str, name: str, param: str) -> dict:
    """Tool call `arguments` (a JSON object string) → Anthropic `input` object; "" → {}."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or isinstance(arguments, str) and not arguments.strip():
        return {}
    if isinstance(arguments, str):
        try:
            value = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    raise InvalidRequest(f"Tool call {call_id!r} ({name}) has arguments that are not a JSON "
                         "object.", param=param)


def _text_blocks(content: Any, param: str) -> list[dict]:
    """System/developer content (string or text parts) → non-empty text blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        block = _text_block(content)
        return [block] if block else []
    blocks = []
    for j, part in enumerate(expect(content, list, param, "a string or a list of text parts")):
        expect(part, dict, f"{param}[{j}]", "an object")
        if part.get("type") != "text":
            raise InvalidRequest("Only text parts are allowed here.", param=f"{param}[{j}].type")
        block = _text_block(expect(part.get("text"), str, f"{param}[{j}].text", "a string"), part)
        if block:
            blocks.append(block)
    return blocks


def _assistant_text_blocks(content: Any, param: str) -> list[dict]:
    """Assistant content (string, text/refusal parts or null) → non-empty text blocks."""
    if not isinstance(content, list):
        return _text_blocks(content, param)
    blocks = []
    for j, part in enumerate(content):
        expect(part, dict, f"{param}[{j}]", "an object")
        key = "refusal" if part.get("type") == "refusal" else "text"
        if part.get("type") not in ("text", "refusal"):
            raise InvalidRequest("Assistant content parts must be text or refusal.",
                                 param=f"{param}[{j}].type")
        block = _text_block(expect(part.get(key), str, f"{param}[{j}].{key}", "a string"), part)
        if block:
            blocks.append(block)
    return blocks


def _user_blocks(content: Any, param: str) -> list[dict]:
    """User (or tool result) content → text/image/document blocks, empty text dropped."""
    if content is None or isinstance(content, str):
        return _text_blocks(content, param)
    blocks = []
    for j, part in enumerate(expect(content, list, param, "a string or a list of parts")):
        block = _user_part(part, f"{param}[{j}]")
        if block:
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
    return blocks


def _user_part(part: Any, param: str) -> dict | None:
    expect(part, dict, param, "an object")
    kind = part.get("type")
    if kind == "text":
        return _text_block(expect(part.get("text"), str, f"{param}.text", "a string"))
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return _media_block(expect(url, str, f"{param}.image_url.url", "a string"),
                            f"{param}.image_url.url")
    if kind == "file":
        return _file_block(expect(part.get("file"), dict, f"{param}.file", "an object"),
                           f"{param}.file")
    if kind == "input_audio":
        raise InvalidRequest("Audio input is not supported by Claude models.", param=f"{param}.type")
    raise InvalidRequest(f"Unsupported content part type {kind!r}.", param=f"{param}.type")


def _media_block(url: str, param: str) -> dict:
    """An image/PDF URL or base64 data URL → Anthropic image or document block."""
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    if not url.startswith("data:"):
        raise InvalidRequest("Images must be http(s) URLs or base64 data URLs.", param=param)
    header, comma, data = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise InvalidRequest("Data URLs must be base64-encoded.", param=param)
    media_type = header[5:].split(";", 1)[0].strip().lower()
    if media_type == "image/jpg":
        media_type = "image/jpeg"
    if media_type in _IMAGE_MEDIA_TYPES:
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if media_type == "application/pdf":
        return {"type": "document",
                "source": {"type": "base64", "media_type": media_type, "data": data}}
    if media_type.startswith("text/"):
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidRequest("Text file data is not valid base64 UTF-8.", param=param) from None
        return {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
    raise InvalidRequest(f"Unsupported media type {media_type!r}.", param=param)


def _file_block(file: dict, param: str) -> dict:
    data = file.get("file_data")
    if data is None:
        raise InvalidRequest("File parts need inline 'file_data' (file_id is not supported).",
                             param=f"{param}.file_data")
    data = expect(data, str, f"{param}.file_data", "a string")
    if not data.startswith("data:"):  # bare base64, as OpenAI documents it for PDFs
        data = "data:application/pdf;base64," + data
    block = _media_block(data, f"{param}.file_data")
    if block["type"] == "document" and isinstance(file.get("filename"), str):
        block["title"] = file["filename"]
    return block


def _convert_tools(tools: Any, dropped: list[str]) -> list[dict]:
    """OpenAI function tools → Anthropic custom tools. Other tool types are dropped."""
    converted: list[dict] = []
    names: set[str] = set()
    for j, tool in enumerate(expect(tools, list, "tools", "a list")):
        param = f"tools[{j}]"
        expect(tool, dict, param, "an object")
        if tool.get("type", "function") != "function":
            if "tools" not in dropped:
                dropped.append("tools")
            continue
        fn = tool.get("function", tool)  # flat (Responses-style) definitions are accepted too
        expect(fn, dict, f"{param}.function", "an object")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("Tools need a function name.", param=f"{param}.function.name")
        if name in names:
            raise InvalidRequest(f"Duplicate tool name {name!r}.", param=f"{param}.function.name")
        names.add(name)
        schema = fn.get("parameters")
        if schema is None:
            schema = _EMPTY_SCHEMA
        elif "type" not in expect(schema, dict, f"{param}.function.parameters", "an object"):
            schema = {"type": "object", **schema}
        entry = {"name": name, "input_schema": schema}
        if isinstance(fn.get("description"), str) and fn["description"]:
            entry["description"] = fn["description"]
        converted.append(entry)
    return converted


def _tool_choice(value: Any, names: set[str]) -> dict | None:
    """OpenAI tool_choice → Anthropic tool_choice (None when absent)."""
    if value is None:
        return None
    simple = {"auto": "auto", "none": "none", "required": "any"}
    if isinstance(value, str) and value in simple:
        choice = {"type": simple[value]}
    elif isinstance(value, dict) and value.get("type") == "function":
        fn = value.get("function")
        name = fn.get("name") if isinstance(fn, dict) else value.get("name")
        if not isinstance(name, str) or name not in names:
            raise InvalidRequest(f"tool_choice names an unknown tool {name!r}.", param="tool_choice")
        choice = {"type": "tool", "name": name}
    else:
        raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or a function.",
                             param="tool_choice")
    if choice["type"] == "any" and not names:
        raise InvalidRequest("tool_choice 'required' needs tools.", param="tool_choice")
    return choice


def _json_schema(response_format: Any) -> dict | None:
    """The schema for the json_tool_call tool, or None for text output."""
    if response_format is None:
        return None
    expect(response_format, dict, "response_format", "an object")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = expect(response_format.get("json_schema"), dict,
                       "response_format.json_schema", "an object")
        schema = spec.get("schema")
        if schema is None:
            return {"type": "object"}
        if expect(schema, dict, "response_format.json_schema.schema", "an object").get("type") != "object":
            raise InvalidRequest("The JSON schema's root must be an object.",
                                 param="response_format.json_schema.schema")
        return schema
    raise InvalidRequest(f"Unsupported response_format type {kind!r}.", param="response_format.type")


def _max_tokens(body: dict, model: Model, default: int | None) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            if not _is_int(value) or value < 1:
                raise InvalidRequest(f"'{name}' must be an integer >= 1.", param=name)
            return min(value, model.max_output)
    return min(default or model.max_output, model.max_output)


def _requested_effort(body: dict, force_thinking: bool) -> str | None:
    """The reasoning effort the client asked for (None = no thinking)."""
    effort = body.get("reasoning_effort")
    if effort is not None and (not isinstance(effort, str)
                               or effort not in THINKING_BUDGETS and effort not in NO_THINKING_EFFORTS):
        raise InvalidRequest("reasoning_effort must be one of none, minimal, low, medium, high, "
                             "xhigh, max.", param="reasoning_effort")
    if effort in THINKING_BUDGETS:
        return effort
    return FORCED_THINKING_EFFORT if force_thinking else None


def _user_id(body: dict, dropped: list[str]) -> str | None:
    for name in ("user", "safety_identifier"):
        value = body.get(name)
        if value is None:
            continue
        # Anthropic's metadata.user_id must be an opaque id; it rejects emails and phone numbers.
        if isinstance(value, str) and value and len(value) <= 256 and "@" not in value \
                and not _PHONE_LIKE.match(value):
            return value
        dropped.append(name)
    return None


def _thinking(effort: str, max_tokens: int, model: Model) -> tuple[dict, dict | None, int]:
    """(thinking, output_config, max_tokens) for `effort`; max_tokens keeps room above the budget."""
    budget = THINKING_BUDGETS[effort]
    max_tokens = min(max(max_tokens, budget + MIN_THINKING_BUDGET), model.max_output)
    if model.adaptive_thinking:
        return {"type": "adaptive"}, {"effort": effort}, max_tokens
    budget = max(MIN_THINKING_BUDGET, min(budget, max_tokens - MIN_THINKING_BUDGET))
    return {"type": "enabled", "budget_tokens": budget}, None, max_tokens


def _tool_config(body: dict, history_tools: list[str], json_schema: dict | None,
                 dropped: list[str], *, thinking_on: bool) -> tuple[list[dict], dict | None]:
    """The Anthropic (tools, tool_choice) for the client's tools, tool history and JSON mode."""
    client_tools = _convert_tools(body["tools"], dropped) if body.get("tools") is not None else []
    choice = _tool_choice(body.get("tool_choice"), {t["name"] for t in client_tools})
    tools = client_tools
    if not client_tools:
        choice = None
        if history_tools:
            # Anthropic rejects tool_use history without tool definitions; these minimal ones
            # satisfy it, and tool_choice "none" keeps the model from calling them.
            tools = [{"name": name, "input_schema": _EMPTY_SCHEMA} for name in history_tools]
            choice = {"type": "none"}
    if json_schema is not None:
        tools = tools + [{"name": JSON_TOOL_NAME, "description": "Respond with JSON matching "
                          "this schema.", "input_schema": json_schema}]
        if not thinking_on and not client_tools:  # forcing it would hide the client's tools
            choice = {"type": "tool", "name": JSON_TOOL_NAME}
        elif choice is not None and choice["type"] == "none":
            choice = None
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        expect(parallel, bool, "parallel_tool_calls", "a boolean")
    if parallel is False and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if thinking_on and choice is not None and choice["type"] in ("any", "tool"):
        choice["type"] = "auto"  # thinking rejects forced tool use
        choice.pop("name", None)
    return tools, choice


def chat_to_anthropic(body: dict, model: Model, *, force_thinking: bool = False,
                      default_max_tokens: int | None = None) -> ChatPlan:
    """Translate an OpenAI Chat Completions request into an Anthropic Messages request.

    Follows PROTOCOL §7.1/§7.3. `force_thinking` turns thinking on (the `-thinking` model
    suffix); `default_max_tokens` applies when the client sent no limit. The returned plan's
    body is valid for the Messages API. Raises InvalidRequest (with `param`) on bad input.
    """
    expect(body, dict, "body", "a JSON object")
    requested = body.get("model")
    if not isinstance(requested, str) or not requested:
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    n = body.get("n")
    if n is not None and (not _is_int(n) or n < 1):
        raise InvalidRequest("'n' must be an integer >= 1.", param="n")
    if n is not None and n > 1:
        raise InvalidRequest("n > 1 is not supported for Claude models; send separate requests.",
                             param="n")
    stream = body.get("stream")
    stream = False if stream is None else expect(stream, bool, "stream", "a boolean")
    stream_options = expect(body.get("stream_options") or {}, dict, "stream_options", "an object")
    dropped = [name for name in DROPPED_PARAMS
               if body.get(name) is not None and body.get(name) is not False]

    conversation = _Conversation()
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list.", param="messages")
    for i, msg in enumerate(messages):
        conversation.add(msg, f"messages[{i}]")
    turns = conversation.finish()
    system = conversation.system

    max_tokens = _max_tokens(body, model, default_max_tokens)
    thinking, output_config = None, None
    effort = _requested_effort(body, force_thinking)
    if effort is not None:
        if not model.supports_thinking or conversation.last_assistant_has_tools \
                or turns[-1]["role"] == "assistant" or model.max_output <= MIN_THINKING_BUDGET:
            # Thinking needs the model's support, a signed thinking block at the head of an
            # in-progress tool turn (OpenAI clients never echo one), no prefill, and room.
            dropped.append("reasoning_effort")
        else:
            thinking, output_config, max_tokens = _thinking(effort, max_tokens, model)
    schema = _json_schema(body.get("response_format"))
    tools, tool_choice = _tool_config(body, conversation.tool_names, schema, dropped,
                                      thinking_on=thinking is not None)
    if schema is not None and (tool_choice or {}).get("name") != JSON_TOOL_NAME:
        system = system + [{"type": "text", "text": f"Give your final answer by calling the "
                            f"{JSON_TOOL_NAME} tool; its input is the JSON response."}]

    out = anthropic_body(body, model, max_tokens, system=system, turns=turns, tools=tools,
                         tool_choice=tool_choice, thinking=thinking, output_config=output_config,
                         sampling=body, dropped=dropped, stream=stream)
    return ChatPlan(body=out, stream=stream,
                    include_usage=bool(stream_options.get("include_usage")),
                    json_mode="tool" if schema is not None else None,
                    dropped_params=dropped, requested_model=requested)


def anthropic_body(body: dict, model: Model, max_tokens: int, *, system: list, turns: list, tools: list | None,
                   tool_choice: dict | None, thinking: dict | None, output_config: dict | None, sampling: dict,
                   dropped: list[str], stream: bool) -> dict[str, Any]:
    """The Messages request both OpenAI translations end in (fields in Anthropic's order)."""
    out: dict[str, Any] = {"model": model.upstream_id, "max_tokens": max_tokens}
    if system:
        out["system"] = system
    out["messages"] = turns
    if tools:
        out["tools"] = tools
    if tool_choice is not None:
        out["tool_choice"] = tool_choice
    if thinking is not None:
        out["thinking"] = thinking
        if output_config is not None:
            out["output_config"] = output_config
    _sampling(sampling, out, dropped, thinking_on=thinking is not None)
    user_id = _user_id(body, dropped)
    if user_id is not None:
        out["metadata"] = {"user_id": user_id}
    out["stream"] = stream
    return out


def _sampling(body: dict, out: dict, dropped: list[str], *, thinking_on: bool) -> None:
    """Copy temperature (clamped to Anthropic's 0–1), top_p, top_k and stop into `out`."""
    for name in ("temperature", "top_p", "top_k"):
        value = body.get(name)
        if value is None:
            continue
        if not (_is_int(value) if name == "top_k" else _is_number(value)) or value < 0:
            raise InvalidRequest(f"'{name}' must be a non-negative number.", param=name)
        if thinking_on:  # thinking is incompatible with modified sampling
            dropped.append(name)
        else:
            out[name] = min(value, 1) if name != "top_k" else value
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else expect(stop, list, "stop",
                                                             "a string or a list of strings")
        for j, s in enumerate(stops):
            expect(s, str, f"stop[{j}]", "a string")
        stops = [s for s in stops if s.strip()]
        if stops:
            out["stop_sequences"] = stops


