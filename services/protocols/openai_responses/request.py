"""OpenAI Responses request → Anthropic Messages request: pure, synchronous, no I/O.

`prepare_responses` validates a `POST /v1/responses` body and translates it: `instructions`
and leading system/developer messages become `system`; later system/developer messages stay
in place as user text (hoisting them would reorder the prompt and break the cached prefix);
items are grouped into alternating turns (assistant-side items into one assistant turn,
tool outputs first in the next user turn); function, namespaced and custom (freeform) tools
become Anthropic tools. Every malformed input raises `InvalidRequest` with `param` naming
the offending field; nothing else is raised.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.core.errors import InvalidRequest
from services.core.types import Model
from services.gateway.catalog import CatalogService
from services.protocols.adapter import UpstreamRequest
from services.protocols.anthropic import estimate_input_tokens
from services.protocols.openai_chat.request import (
    JSON_TOOL_NAME,
    MIN_THINKING_BUDGET,
    NO_THINKING_EFFORTS,
    PLACEHOLDER_TEXT,
    THINKING_BUDGETS,
    _media_block,
    _safe_tool_id,
    _thinking,
    anthropic_body,
    expect,
    normalise_turns,
    split_thinking_suffix,
)

ENVELOPE_PREFIX = "cheaplm.v1:"
"""`reasoning.encrypted_content` issued here: the prefix, then base64url JSON
{"model": upstream id, "blocks": [Anthropic thinking blocks]}."""

NAMESPACE_SEPARATOR = "__"
"""A namespaced tool `ns` / `fn` is the Anthropic tool `ns__fn`."""

MAX_TOOL_NAME = 64  # Anthropic's limit on a tool name

UNSUPPORTED_FIELDS = ("conversation", "prompt", "background", "background_options")
"""Server-side state this stateless gateway does not keep: a 400 naming the field."""

DROPPED_PARAMS = (
    "service_tier", "top_logprobs", "max_tool_calls", "stream_options", "prompt_cache_retention",
    "prompt_cache_options", "context_management", "moderation", "image", "access_programs",
    "truncation", "client_metadata", "prompt_cache_key",
)
"""OpenAI-only fields: not sent upstream, reported in `dropped_params`."""

UNSUPPORTED_TOOL_TYPES = frozenset({
    "file_search", "computer", "computer_use_preview", "code_interpreter", "image_generation",
    "mcp", "shell", "apply_patch", "programmatic_tool_calling",
})
DROPPED_TOOL_TYPES = frozenset({"web_search", "web_search_preview", "tool_search"})
"""Hosted tools Codex always sends; dropped rather than refused, so Codex works unchanged."""

_ASSISTANT_ITEMS = frozenset({"reasoning", "function_call", "custom_tool_call", "local_shell_call"})
_OUTPUT_ITEMS = frozenset({"function_call_output", "custom_tool_call_output", "local_shell_call_output"})
_CUSTOM_SCHEMA = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}
_EMPTY_SCHEMA: dict = {"type": "object", "properties": {}}
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


@dataclass
class ResponsesPlan:
    """A translated request: the upstream body plus what the answer's translation needs."""

    body: dict
    stream: bool
    requested_model: str
    upstream_model: str
    echo: dict                                   # request fields echoed in the Response object
    summaries: bool = True                       # expose thinking text as summary_text
    encrypted: bool = False                      # include reasoning.encrypted_content
    json_mode: bool = False                      # the answer is the JSON tool's input
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)  # flat → (ns, name)
    custom_tools: frozenset[str] = frozenset()   # freeform tools: input is {"input": str}
    dropped_params: list[str] = field(default_factory=list)


def previous_response_refusal() -> InvalidRequest:
    return InvalidRequest(
        "previous_response_id is not supported: this gateway does not store responses. Send the "
        "whole conversation in `input` (store=false), as Codex does.",
        param="previous_response_id", code="unsupported_parameter")


def responses_model(body: Any, catalog: CatalogService) -> tuple[Model, bool]:
    """The catalog model a Responses body names, and whether a `-thinking` suffix asked for
    thinking. Raises InvalidRequest (no body object, no model) or UnknownModel."""
    expect(body, dict, "body", "a JSON object")
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("model: field required (a model name string)", param="model")
    name, thinking = split_thinking_suffix(name)
    return catalog.resolve(name), thinking


def prepare_responses(body: dict, model: Model, *,
                      force_thinking: bool = False) -> tuple[UpstreamRequest, ResponsesPlan]:
    """Translate a Responses body for `model` into the request to forward and the plan its
    answer's translation follows. Raises InvalidRequest (with `param`) on bad input."""
    plan = responses_to_anthropic(body, model, force_thinking=force_thinking)
    raw = orjson.dumps(plan.body)
    request = UpstreamRequest(model, raw, plan.stream, plan.body["max_tokens"],
                              estimate_input_tokens(len(raw), plan.body["messages"]))
    return request, plan


# --------------------------------------------------------------------------- envelope

def decode_envelope(value: Any, upstream_model: str) -> list[dict]:
    """The thinking blocks inside one of our `encrypted_content` envelopes for this model;
    [] for anything else (another model's, OpenAI's, damaged)."""
    if not isinstance(value, str) or not value.startswith(ENVELOPE_PREFIX):
        return []
    try:
        data = orjson.loads(base64.urlsafe_b64decode(value[len(ENVELOPE_PREFIX):] + "=="))
    except (binascii.Error, ValueError):
        return []
    if not isinstance(data, dict) or data.get("model") != upstream_model:
        return []
    blocks = data.get("blocks")
    if not isinstance(blocks, list):
        return []
    out = []
    for block in blocks:
        if isinstance(block, dict) and block.get("type") == "thinking" \
                and isinstance(block.get("thinking"), str) and isinstance(block.get("signature"), str):
            out.append({"type": "thinking", "thinking": block["thinking"], "signature": block["signature"]})
        elif isinstance(block, dict) and block.get("type") == "redacted_thinking" \
                and isinstance(block.get("data"), str):
            out.append({"type": "redacted_thinking", "data": block["data"]})
    return out


# --------------------------------------------------------------------------- tools

class _Tools:
    """Responses tool definitions → Anthropic tools, remembering namespaced and custom names."""

    def __init__(self) -> None:
        self.tools: list[dict] = []
        self.names: set[str] = set()
        self.namespaced: dict[str, tuple[str, str]] = {}
        self.custom: set[str] = set()

    def add_all(self, tools: Any, dropped: list[str]) -> None:
        for j, tool in enumerate(expect(tools, list, "tools", "a list")):
            param = f"tools[{j}]"
            expect(tool, dict, param, "an object")
            kind = tool.get("type", "function")
            if kind == "namespace":
                ns = tool.get("name")
                if not isinstance(ns, str) or not ns:
                    raise InvalidRequest("Namespace tools need a name.", param=f"{param}.name")
                for k, sub in enumerate(expect(tool.get("tools"), list, f"{param}.tools", "a list")):
                    expect(sub, dict, f"{param}.tools[{k}]", "an object")
                    self._add(sub, f"{param}.tools[{k}]", namespace=ns)
            elif kind in ("function", "custom"):
                self._add(tool, param)
            elif kind == "local_shell":
                self._add({"type": "function", "name": "local_shell", "parameters": {
                    "type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}},
                                                     "workdir": {"type": "string"},
                                                     "timeout_ms": {"type": "integer"}},
                    "required": ["command"]}}, param)
            elif kind in DROPPED_TOOL_TYPES:
                if "tools" not in dropped:
                    dropped.append("tools")
            elif isinstance(kind, str) and kind in UNSUPPORTED_TOOL_TYPES:
                raise InvalidRequest(f"Unsupported tool type {kind!r}.", param=f"{param}.type")
            else:
                raise InvalidRequest(f"Unknown tool type {kind!r}.", param=f"{param}.type")

    def _add(self, tool: dict, param: str, *, namespace: str | None = None) -> None:
        kind = tool.get("type", "function")
        if kind not in ("function", "custom"):
            raise InvalidRequest(f"Unsupported tool type {kind!r} in a namespace.", param=f"{param}.type")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("Tools need a name.", param=f"{param}.name")
        flat = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name
        if len(flat) > MAX_TOOL_NAME:
            raise InvalidRequest(f"Tool name {flat!r} is longer than {MAX_TOOL_NAME} characters.",
                                 param=f"{param}.name")
        if flat in self.names:
            raise InvalidRequest(f"Duplicate tool name {flat!r}.", param=f"{param}.name")
        self.names.add(flat)
        if namespace:
            self.namespaced[flat] = (namespace, name)
        description = tool.get("description")
        description = description if isinstance(description, str) else ""
        if kind == "custom":
            self.custom.add(flat)
            fmt = tool.get("format")
            if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
                description += (f"\n\nThe `input` string must follow this {fmt.get('syntax', '')} grammar:\n"
                                + fmt["definition"])
            schema = _CUSTOM_SCHEMA
        else:
            schema = tool.get("parameters")
            if schema is None:
                schema = _EMPTY_SCHEMA
            elif "type" not in expect(schema, dict, f"{param}.parameters", "an object"):
                schema = {"type": "object", **schema}
        entry = {"name": flat, "input_schema": schema}
        if description.strip():
            entry["description"] = description
        self.tools.append(entry)

    def flat_name(self, name: Any, namespace: Any, param: str) -> str:
        if not isinstance(name, str) or not name:
            raise InvalidRequest("Tool calls need a name.", param=f"{param}.name")
        if isinstance(namespace, str) and namespace:
            return f"{namespace}{NAMESPACE_SEPARATOR}{name}"
        return name


def _tool_choice(value: Any, tools: _Tools, param: str = "tool_choice") -> tuple[dict | None, set[str] | None]:
    """Responses tool_choice → (Anthropic tool_choice, the allowed tool names or None for all)."""
    if value is None:
        return None, None
    simple = {"auto": "auto", "none": "none", "required": "any"}
    if isinstance(value, str):
        if value not in simple:
            raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or an object.", param=param)
        return {"type": simple[value]}, None
    expect(value, dict, param, "a string or an object")
    kind = value.get("type")
    if kind in ("function", "custom"):
        name = value.get("name")
        if isinstance(value.get("namespace"), str):
            name = tools.flat_name(name, value["namespace"], param)
        if not isinstance(name, str) or name not in tools.names:
            raise InvalidRequest(f"tool_choice names an unknown tool {name!r}.", param=param)
        return {"type": "tool", "name": name}, None
    if kind == "allowed_tools":
        mode = value.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise InvalidRequest("tool_choice.mode must be 'auto' or 'required'.", param=f"{param}.mode")
        allowed: set[str] = set()
        for k, ref in enumerate(expect(value.get("tools"), list, f"{param}.tools", "a list")):
            expect(ref, dict, f"{param}.tools[{k}]", "an object")
            allowed.add(tools.flat_name(ref.get("name"), ref.get("namespace"), f"{param}.tools[{k}]"))
        return {"type": simple[mode]}, allowed
    raise InvalidRequest(f"Unsupported tool_choice type {kind!r}.", param=f"{param}.type")


# --------------------------------------------------------------------------- input items

class _Conversation:
    """Builds alternating Anthropic turns from Responses input items (see the module doc)."""

    def __init__(self, tools: _Tools, upstream_model: str) -> None:
        self.tools = tools
        self.upstream_model = upstream_model
        self.system: list[dict] = []
        self.turns: list[dict] = []
        self.history_tools: list[str] = []   # tool names used in history, in order
        self._leading = 0                    # tool_result blocks at the head of the last user turn
        self._thinking = 0                   # thinking blocks at the head of the last assistant turn
        self._open: dict[str, None] = {}     # tool_use ids of the last assistant turn not yet answered
        self._seen: set[str] = set()
        self._started = False                # a user/assistant item has been seen

    # -- turns
    def _turn(self, role: str) -> list[dict]:
        if not self.turns or self.turns[-1]["role"] != role:
            if role == "assistant":
                self._close_calls()
            self.turns.append({"role": role, "content": []})
            self._leading = self._thinking = 0
        return self.turns[-1]["content"]

    def _close_calls(self) -> None:
        """Answer calls the history left unanswered (the user interrupted): Anthropic needs a
        result for every tool_use in the next user turn."""
        if not self._open:
            return
        content = self._turn("user")
        missing = [{"type": "tool_result", "tool_use_id": i, "is_error": True, "content": "no result"}
                   for i in self._open]
        content[self._leading:self._leading] = missing
        self._leading += len(missing)
        self._open = {}

    def _user(self, blocks: list[dict]) -> None:
        if blocks:
            self._turn("user").extend(blocks)

    def _assistant(self, blocks: list[dict]) -> None:
        if blocks:
            self._turn("assistant").extend(blocks)

    # -- items
    def add(self, item: Any, param: str) -> None:
        expect(item, dict, param, "an object")
        kind = item.get("type")
        if kind is None and "role" in item:
            kind = "message"
        if kind == "message":
            self._message(item, param)
        elif kind == "reasoning":
            self._started = True
            blocks = decode_envelope(item.get("encrypted_content"), self.upstream_model)
            if blocks:
                content = self._turn("assistant")
                content[self._thinking:self._thinking] = blocks
                self._thinking += len(blocks)
        elif kind in ("function_call", "custom_tool_call", "local_shell_call"):
            self._call(item, kind, param)
        elif kind in _OUTPUT_ITEMS:
            self._output(item, param)
        elif kind == "item_reference":
            raise InvalidRequest("item_reference input items are not supported: this gateway does not "
                                 "store responses. Send the items themselves.", param=f"{param}.type",
                                 code="unsupported_parameter")
        else:
            raise InvalidRequest(f"Unsupported input item type {kind!r}.", param=f"{param}.type")

    def _message(self, item: dict, param: str) -> None:
        role = item.get("role")
        content = item.get("content")
        if role in ("system", "developer"):
            blocks = _parts(content, f"{param}.content", role)
            if not self._started:
                self.system.extend(b for b in blocks if b["type"] == "text")
            else:
                self._user(blocks)
        elif role == "user":
            self._started = True
            self._user(_parts(content, f"{param}.content", role))
        elif role == "assistant":
            self._started = True
            self._assistant(_parts(content, f"{param}.content", role))
        elif role is None:
            raise InvalidRequest("Message items need a 'role'.", param=f"{param}.role")
        else:
            raise InvalidRequest(f"Unsupported message role {role!r}.", param=f"{param}.role")

    def _call(self, item: dict, kind: str, param: str) -> None:
        self._started = True
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest("Tool calls need a non-empty string 'call_id'.", param=f"{param}.call_id")
        tool_id = _safe_tool_id(call_id)
        if tool_id in self._seen:
            raise InvalidRequest(f"Duplicate call_id {call_id!r}.", param=f"{param}.call_id")
        if kind == "local_shell_call":
            name = "local_shell"
            action = item.get("action")
            tool_input = action if isinstance(action, dict) else {}
        else:
            name = self.tools.flat_name(item.get("name"), item.get("namespace"), param)
            if kind == "custom_tool_call":
                value = item.get("input")
                tool_input = {"input": value if isinstance(value, str) else ""}
            else:
                tool_input = _arguments(item.get("arguments"))
        self._seen.add(tool_id)
        if name not in self.history_tools:
            self.history_tools.append(name)
        self._assistant([{"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}])
        self._open[tool_id] = None

    def _output(self, item: dict, param: str) -> None:
        self._started = True
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest("Tool outputs need a non-empty string 'call_id'.", param=f"{param}.call_id")
        tool_id = _safe_tool_id(call_id)
        output = item.get("output")
        if tool_id not in self._open:
            # An output whose call is not in the preceding assistant turn (Anthropic would reject
            # the pair): kept as plain text, so the model still sees it.
            text = output if isinstance(output, str) else orjson.dumps(output).decode()
            self._user([{"type": "text", "text": f"[output of tool call {call_id}]\n{text or PLACEHOLDER_TEXT}"}])
            return
        del self._open[tool_id]
        block: dict = {"type": "tool_result", "tool_use_id": tool_id}
        if isinstance(output, str):
            if output.strip():
                block["content"] = output
        elif output is not None:
            parts = _parts(output, f"{param}.output", "user")
            if parts:
                block["content"] = parts
        content = self._turn("user")
        content.insert(self._leading, block)
        self._leading += 1

    def finish(self) -> list[dict]:
        """The Anthropic `messages`: starts with user, alternates, no empty turns, every call
        answered."""
        self._close_calls()
        return normalise_turns(self.turns)

    def last_turn_needs_thinking(self) -> bool:
        """The conversation continues a tool loop whose assistant turn has no (signed) thinking
        first: Anthropic then rejects thinking for this request."""
        for turn in reversed(self.turns):
            if turn["role"] == "assistant":
                content = turn["content"]
                has_tools = any(b["type"] == "tool_use" for b in content)
                starts_thinking = bool(content) and content[0]["type"] in ("thinking", "redacted_thinking")
                return has_tools and not starts_thinking
        return False


def _arguments(arguments: Any) -> dict:
    """A function call's `arguments` (a JSON object string) → Anthropic `input`. Codex replays
    invalid or empty arguments verbatim; they become {} rather than failing the request."""
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str) and arguments.strip():
        try:
            value = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return {}
        if isinstance(value, dict):
            return value
    return {}


def _parts(content: Any, param: str, role: str) -> list[dict]:
    """Message content (a string or parts) → Anthropic blocks, empty text dropped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks = []
    for j, part in enumerate(expect(content, list, param, "a string or a list of content parts")):
        block = _part(part, f"{param}[{j}]", role)
        if block is not None:
            blocks.append(block)
    return blocks


def _part(part: Any, param: str, role: str) -> dict | None:
    expect(part, dict, param, "an object")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
        text = expect(part.get("text"), str, f"{param}.text", "a string")
        return {"type": "text", "text": text} if text.strip() else None
    if kind == "refusal":
        text = expect(part.get("refusal"), str, f"{param}.refusal", "a string")
        return {"type": "text", "text": text} if text.strip() else None
    if role == "assistant":
        raise InvalidRequest(f"Unsupported assistant content part {kind!r}.", param=f"{param}.type")
    if kind == "input_image":
        if part.get("file_id") is not None and part.get("image_url") is None:
            raise InvalidRequest("file_id images are not supported (no Files API); send image_url.",
                                 param=f"{param}.file_id")
        url = part.get("image_url")
        if isinstance(url, dict):
            url = url.get("url")
        block = _media_block(expect(url, str, f"{param}.image_url", "a string"), f"{param}.image_url")
        return block
    if kind == "input_file":
        return _file(part, param)
    if kind == "input_audio":
        raise InvalidRequest("Audio input is not supported by Claude models.", param=f"{param}.type")
    raise InvalidRequest(f"Unsupported content part type {kind!r}.", param=f"{param}.type")


def _file(part: dict, param: str) -> dict:
    data, url = part.get("file_data"), part.get("file_url")
    if data is not None:
        data = expect(data, str, f"{param}.file_data", "a string")
        if not data.startswith("data:"):  # bare base64, as OpenAI documents it for PDFs
            data = "data:application/pdf;base64," + data
        block = _media_block(data, f"{param}.file_data")
        if block["type"] == "image":
            return block
    elif url is not None:
        url = expect(url, str, f"{param}.file_url", "a string")
        if not url.startswith(("http://", "https://")):
            raise InvalidRequest("file_url must be an http(s) URL.", param=f"{param}.file_url")
        block = {"type": "document", "source": {"type": "url", "url": url}}
    else:
        raise InvalidRequest("File parts need 'file_data' or 'file_url' (file_id is not supported).",
                             param=f"{param}.file_data")
    if isinstance(part.get("filename"), str) and part["filename"]:
        block["title"] = part["filename"]
    return block


# --------------------------------------------------------------------------- the body

def _max_tokens(body: dict, model: Model) -> int:
    value = body.get("max_output_tokens")
    if value is None:
        return model.max_output
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest("'max_output_tokens' must be an integer >= 1.", param="max_output_tokens")
    return min(value, model.max_output)


def _reasoning(body: dict) -> tuple[str | None, bool]:
    """(effort asked for or None, whether summaries are wanted)."""
    reasoning = body.get("reasoning")
    if reasoning is None:
        return None, False
    expect(reasoning, dict, "reasoning", "an object")
    effort = reasoning.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise InvalidRequest(f"reasoning.effort must be one of {', '.join(_EFFORTS)}.", param="reasoning.effort")
    summary = reasoning.get("summary", reasoning.get("generate_summary"))
    if summary is not None and summary not in ("auto", "concise", "detailed"):
        raise InvalidRequest("reasoning.summary must be auto, concise, detailed or null.",
                             param="reasoning.summary")
    return effort, summary is not None


def _json_schema(text: Any) -> dict | None:
    """The JSON tool's schema for `text.format`, or None for text output."""
    if text is None:
        return None
    expect(text, dict, "text", "an object")
    fmt = text.get("format")
    if fmt is None:
        return None
    expect(fmt, dict, "text.format", "an object")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        schema = fmt.get("schema")
        if schema is None:
            return {"type": "object"}
        if expect(schema, dict, "text.format.schema", "an object").get("type") != "object":
            raise InvalidRequest("The JSON schema's root must be an object.", param="text.format.schema")
        return schema
    raise InvalidRequest(f"Unsupported text.format type {kind!r}.", param="text.format.type")


def _include(body: dict) -> bool:
    include = body.get("include")
    if include is None:
        return False
    for j, value in enumerate(expect(include, list, "include", "a list")):
        expect(value, str, f"include[{j}]", "a string")
    return "reasoning.encrypted_content" in include


def responses_to_anthropic(body: Any, model: Model, *, force_thinking: bool = False) -> ResponsesPlan:
    """Translate a Responses request into an Anthropic Messages request (see the module doc).
    The plan's body is valid for the Messages API. Raises InvalidRequest (with `param`)."""
    expect(body, dict, "body", "a JSON object")
    requested = body.get("model")
    if not isinstance(requested, str) or not requested:
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    if body.get("previous_response_id") is not None:
        raise previous_response_refusal()
    for name in UNSUPPORTED_FIELDS:
        if body.get(name) not in (None, False):
            raise InvalidRequest(f"{name} is not supported: this gateway keeps no server-side state.",
                                 param=name, code="unsupported_parameter")
    stream = body.get("stream")
    stream = False if stream is None else expect(stream, bool, "stream", "a boolean")
    dropped = [n for n in DROPPED_PARAMS if body.get(n) is not None]

    tools = _Tools()
    if body.get("tools") is not None:
        tools.add_all(body["tools"], dropped)
    choice, allowed = _tool_choice(body.get("tool_choice"), tools)
    conversation = _Conversation(tools, model.upstream_id)
    instructions = body.get("instructions")
    if instructions is not None:
        if isinstance(instructions, str):
            if instructions.strip():
                conversation.system.append({"type": "text", "text": instructions})
        else:
            conversation.system.extend(b for b in _parts(instructions, "instructions", "user") if b["type"] == "text")
    items = body.get("input")
    if isinstance(items, str):
        conversation.add({"type": "message", "role": "user", "content": items}, "input")
    else:
        items = expect(items, list, "input", "a string or a list of items")
        for i, item in enumerate(items):
            conversation.add(item, f"input[{i}]")
    turns = conversation.finish()

    max_tokens = _max_tokens(body, model)
    effort, summaries = _reasoning(body)
    if effort is None and force_thinking:
        effort = "high"
    thinking = output_config = None
    if effort is not None and effort not in NO_THINKING_EFFORTS:
        if not model.supports_thinking or conversation.last_turn_needs_thinking() \
                or turns[-1]["role"] == "assistant" or model.max_output <= MIN_THINKING_BUDGET:
            dropped.append("reasoning")
        else:
            thinking, output_config, max_tokens = _thinking(effort if effort in THINKING_BUDGETS else "high",
                                                            max_tokens, model)
    if thinking is None:  # signed thinking in history is only meaningful with thinking on
        for turn in turns:
            if turn["role"] == "assistant":
                kept = [b for b in turn["content"] if b["type"] not in ("thinking", "redacted_thinking")]
                turn["content"] = kept or [{"type": "text", "text": PLACEHOLDER_TEXT}]

    # Tools: the client's (filtered by allowed_tools), or minimal definitions for the tools the
    # history used (Codex's compaction sends history with tool calls and `tools: []`).
    anthropic_tools = [t for t in tools.tools if allowed is None or t["name"] in allowed]
    if choice is not None and choice["type"] == "tool" and choice["name"] not in {t["name"] for t in anthropic_tools}:
        raise InvalidRequest(f"tool_choice names a tool that is not allowed: {choice['name']!r}.",
                             param="tool_choice")
    if not anthropic_tools:
        choice = None
        history = conversation.history_tools
        if history:
            anthropic_tools = [{"name": n, "input_schema": _CUSTOM_SCHEMA if n in tools.custom else _EMPTY_SCHEMA}
                               for n in history]
            choice = {"type": "none"}
    else:
        for name in conversation.history_tools:  # history calls of tools no longer offered
            if name not in {t["name"] for t in anthropic_tools}:
                anthropic_tools.append({"name": name, "input_schema": _EMPTY_SCHEMA})
    schema = _json_schema(body.get("text"))
    system = conversation.system
    offered = bool(anthropic_tools) and (choice is None or choice["type"] != "none")
    if schema is not None:
        anthropic_tools = anthropic_tools + [{"name": JSON_TOOL_NAME, "description": "Respond with JSON "
                                              "matching this schema.", "input_schema": schema}]
        if thinking is None and not offered:
            choice = {"type": "tool", "name": JSON_TOOL_NAME}
        else:
            if choice is not None and choice["type"] == "none":
                choice = None
            system = system + [{"type": "text", "text": f"Give your final answer by calling the "
                                f"{JSON_TOOL_NAME} tool; its input is the JSON response."}]
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        expect(parallel, bool, "parallel_tool_calls", "a boolean")
    if parallel is False and anthropic_tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None and choice["type"] == "any" and not anthropic_tools:
        raise InvalidRequest("tool_choice 'required' needs tools.", param="tool_choice")
    if thinking is not None and choice is not None and choice["type"] in ("any", "tool"):
        choice["type"] = "auto"  # thinking rejects forced tool use
        choice.pop("name", None)

    metadata = body.get("metadata")
    if metadata is not None:
        expect(metadata, dict, "metadata", "an object")
    out = anthropic_body(body, model, max_tokens, system=system, turns=turns, tools=anthropic_tools,
                         tool_choice=choice if anthropic_tools else None, thinking=thinking,
                         output_config=output_config, sampling={k: body.get(k) for k in ("temperature", "top_p")},
                         dropped=dropped, stream=stream)
    echo = {"instructions": instructions if isinstance(instructions, str) else None,
            "max_output_tokens": body.get("max_output_tokens"),
            "metadata": metadata or {}, "parallel_tool_calls": parallel is not False,
            "reasoning": {"effort": effort, "summary": (body.get("reasoning") or {}).get("summary")},
            "temperature": body.get("temperature", 1.0), "top_p": body.get("top_p", 1.0),
            "text": body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "prompt_cache_key": body.get("prompt_cache_key")}
    return ResponsesPlan(body=out, stream=stream, requested_model=requested, upstream_model=model.upstream_id,
                         echo=echo, summaries=summaries, encrypted=_include(body),
                         json_mode=schema is not None, namespaced=tools.namespaced,
                         custom_tools=frozenset(tools.custom), dropped_params=dropped)
