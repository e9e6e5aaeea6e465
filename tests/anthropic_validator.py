"""Strict validation of Anthropic Messages request bodies, as the real API would reject them.

`validate_request(body)` returns a list of human-readable problems (empty = valid). The fake
upstream answers 400 with these problems, so a gateway that mangles a body fails loudly in
tests instead of silently in production. Unknown top-level fields are accepted (betas).
"""
from __future__ import annotations

import re
from typing import Any

TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
TOOL_ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
IMAGE_MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
TOOL_CHOICE_TYPES = {"auto", "any", "tool", "none"}
MAX_CACHE_BREAKPOINTS = 4


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Checker:
    """Collects problems while walking one body; `where` strings mirror the API's JSON paths."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.cache_breakpoints = 0

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def cache_control(self, where: str, block: dict) -> None:
        cc = block.get("cache_control")
        if cc is None:
            return
        self.cache_breakpoints += 1
        if not isinstance(cc, dict) or cc.get("type") != "ephemeral":
            self.add(f"{where}.cache_control", "must be {\"type\": \"ephemeral\"}")
        elif "ttl" in cc and cc["ttl"] not in ("5m", "1h"):
            self.add(f"{where}.cache_control.ttl", "must be '5m' or '1h'")

    def text_block(self, where: str, block: dict, *, allow_empty: bool = False) -> None:
        text = block.get("text")
        if not isinstance(text, str):
            self.add(f"{where}.text", "must be a string")
        elif not allow_empty and not text:
            self.add(where, "text content blocks must be non-empty")
        elif not allow_empty and not text.strip():
            self.add(where, "text content blocks must contain non-whitespace text")

    def source(self, where: str, source: Any, allowed: dict[str, set[str] | None]) -> None:
        """`allowed` maps a source type to its permitted media types (None = not checked)."""
        if not isinstance(source, dict):
            self.add(where, "must be an object")
            return
        kind = source.get("type")
        if kind not in allowed:
            self.add(f"{where}.type", f"must be one of {sorted(allowed)}")
        elif kind == "url":
            if not isinstance(source.get("url"), str) or not source["url"]:
                self.add(f"{where}.url", "must be a non-empty string")
        elif kind == "content":
            if not isinstance(source.get("content"), (str, list)):
                self.add(f"{where}.content", "must be a string or a list of blocks")
        else:  # base64 / text: inline data with a media type
            media = allowed[kind]
            if media is not None and source.get("media_type") not in media:
                self.add(f"{where}.media_type", f"must be one of {sorted(media)}")
            if not isinstance(source.get("data"), str):
                self.add(f"{where}.data", "must be a string")

    def block(self, where: str, block: Any, role: str, *, allow_empty_text: bool = False) -> None:
        if not isinstance(block, dict):
            self.add(where, "content blocks must be objects")
            return
        kind = block.get("type")
        if not isinstance(kind, str):
            self.add(f"{where}.type", "must be a string")
            return
        self.cache_control(where, block)
        if kind == "text":
            self.text_block(where, block, allow_empty=allow_empty_text)
        elif kind == "image":
            self.source(f"{where}.source", block.get("source"),
                        {"base64": IMAGE_MEDIA_TYPES, "url": None})
        elif kind == "document":
            self.source(f"{where}.source", block.get("source"),
                        {"base64": {"application/pdf"}, "text": {"text/plain"},
                         "url": None, "content": None})
        elif kind == "tool_use":
            if role != "assistant":
                self.add(where, "tool_use blocks are only allowed in assistant messages")
            if not isinstance(block.get("id"), str) or not TOOL_ID_RE.match(block["id"]):
                self.add(f"{where}.id", "must be a string matching ^[a-zA-Z0-9_-]+$")
            if not isinstance(block.get("name"), str) or not block["name"]:
                self.add(f"{where}.name", "must be a non-empty string")
            if not isinstance(block.get("input"), dict):
                self.add(f"{where}.input", "must be an object")
        elif kind == "tool_result":
            if role != "user":
                self.add(where, "tool_result blocks are only allowed in user messages")
            if not isinstance(block.get("tool_use_id"), str):
                self.add(f"{where}.tool_use_id", "must be a string")
            content = block.get("content")
            if isinstance(content, list):
                for j, inner in enumerate(content):
                    self.block(f"{where}.content.{j}", inner, role)
            elif content is not None and not isinstance(content, str):
                self.add(f"{where}.content", "must be a string or a list of blocks")
            if "is_error" in block and not isinstance(block["is_error"], bool):
                self.add(f"{where}.is_error", "must be a boolean")
        elif kind in ("thinking", "redacted_thinking"):
            if role != "assistant":
                self.add(where, f"{kind} blocks are only allowed in assistant messages")
            fields = ("thinking", "signature") if kind == "thinking" else ("data",)
            for name in fields:
                if not isinstance(block.get(name), str):
                    self.add(f"{where}.{name}", "must be a string")
        # Other block types (search_result, server tools, betas) are passed through unchecked.


MID_CONVERSATION_SYSTEM_BETA = "mid-conversation-system-2026-04-07"
"""The beta (sent by Claude Code 2.1) that allows `system` messages between the turns."""


def validate_request(body: Any, *, count_tokens: bool = False, betas: str = "") -> list[str]:
    """Return the problems the real Messages API would report for `body` (empty list = valid).

    With `count_tokens=True` the body is checked as a `/v1/messages/count_tokens` request:
    `max_tokens` is then optional. `betas` is the request's anthropic-beta header.
    """
    c = _Checker()
    if not isinstance(body, dict):
        return ["body: must be a JSON object"]

    if not isinstance(body.get("model"), str) or not body["model"]:
        c.add("model", "must be a non-empty string")
    max_tokens = body.get("max_tokens")
    if not (count_tokens and max_tokens is None):
        if not _is_int(max_tokens) or max_tokens < 1:
            c.add("max_tokens", "must be an integer >= 1")
            max_tokens = None

    messages = body.get("messages")
    if MID_CONVERSATION_SYSTEM_BETA in betas and isinstance(messages, list):
        # System messages sit between the turns; the turns around them still alternate.
        for i, m in enumerate(messages):
            if isinstance(m, dict) and m.get("role") == "system" and not isinstance(m.get("content"), (str, list)):
                c.add(f"messages.{i}.content", "must be a string or a list of text blocks")
        messages = [m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")]
    _check_messages(c, messages)
    tool_names = _check_tools(c, body.get("tools"))
    _check_system(c, body)
    _check_sampling(c, body)

    tool_choice = body.get("tool_choice")
    if tool_choice is not None:
        if not isinstance(tool_choice, dict) or tool_choice.get("type") not in TOOL_CHOICE_TYPES:
            c.add("tool_choice.type", f"must be one of {sorted(TOOL_CHOICE_TYPES)}")
        elif tool_choice["type"] == "tool" and tool_choice.get("name") not in tool_names:
            c.add("tool_choice.name", "must name a tool listed in `tools`")
        elif "disable_parallel_tool_use" in tool_choice and \
                not isinstance(tool_choice["disable_parallel_tool_use"], bool):
            c.add("tool_choice.disable_parallel_tool_use", "must be a boolean")

    _check_thinking(c, body, max_tokens)

    if c.cache_breakpoints > MAX_CACHE_BREAKPOINTS:
        c.add("cache_control", f"a maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control "
                               f"may be provided; found {c.cache_breakpoints}")
    return c.problems


def _check_messages(c: _Checker, messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        c.add("messages", "must be a non-empty list")
        return
    last = len(messages) - 1
    pending_tool_ids: set[str] = set()  # tool_use ids of the previous assistant message
    seen_tool_ids: set[str] = set()
    prev_role = None
    for i, msg in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(msg, dict):
            c.add(where, "must be an object")
            prev_role, pending_tool_ids = None, set()
            continue
        role, content = msg.get("role"), msg.get("content")
        if role not in ("user", "assistant"):
            c.add(f"{where}.role", "must be 'user' or 'assistant'")
        elif i == 0 and role != "user":
            c.add(where, "the first message must use the 'user' role")
        elif role == prev_role:
            c.add(where, f"roles must alternate between 'user' and 'assistant'; "
                         f"found two consecutive '{role}' messages")
        # The optional final assistant message (prefill) may be empty, but not end in whitespace.
        is_prefill = i == last and role == "assistant"
        if isinstance(content, str):
            if not content.strip() and not (is_prefill and content == ""):
                c.add(f"{where}.content", "all messages must have non-empty content except "
                                          "for the optional final assistant message")
            elif is_prefill and content != content.rstrip():
                c.add(where, "final assistant content cannot end with trailing whitespace")
        elif isinstance(content, list):
            if not content and not is_prefill:
                c.add(f"{where}.content", "all messages must have non-empty content except "
                                          "for the optional final assistant message")
            for j, block in enumerate(content):
                c.block(f"{where}.content.{j}", block, role)
            tail = content[-1] if content and isinstance(content[-1], dict) else {}
            if is_prefill and tail.get("type") == "text" and isinstance(tail.get("text"), str) \
                    and tail["text"].strip() and tail["text"] != tail["text"].rstrip():
                c.add(where, "final assistant content cannot end with trailing whitespace")
        else:
            c.add(f"{where}.content", "must be a string or a list of content blocks")
            content = []

        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        if role == "user":
            _check_tool_results(c, where, blocks, pending_tool_ids)
        pending_tool_ids = set()
        if role == "assistant":
            for j, b in enumerate(blocks):
                if b.get("type") == "tool_use" and isinstance(b.get("id"), str):
                    if b["id"] in seen_tool_ids:
                        c.add(f"{where}.content.{j}.id", f"tool_use ids must be unique: {b['id']}")
                    seen_tool_ids.add(b["id"])
                    pending_tool_ids.add(b["id"])
        prev_role = role
        if pending_tool_ids and i == last:
            c.add(where, "tool_use ids were found without tool_result blocks immediately "
                         f"after: {', '.join(sorted(pending_tool_ids))}")


def _check_tool_results(c: _Checker, where: str, blocks: list[dict], expected: set[str]) -> None:
    """A user turn answers the previous assistant's tool_use ids with leading tool_result blocks."""
    leading: list[dict] = []
    for b in blocks:
        if b.get("type") != "tool_result":
            break
        leading.append(b)
    answered = {b.get("tool_use_id") for b in leading}
    missing = expected - answered
    if missing:
        c.add(where, "tool_use ids were found without tool_result blocks immediately after: "
                     f"{', '.join(sorted(missing))}; each tool_use must have a corresponding "
                     "tool_result at the beginning of the next message")
    for j, b in enumerate(blocks):
        if b.get("type") != "tool_result":
            continue
        if j >= len(leading):
            c.add(f"{where}.content.{j}", "tool_result blocks must come before any other content")
        if isinstance(b.get("tool_use_id"), str) and b["tool_use_id"] not in expected:
            c.add(f"{where}.content.{j}", f"unexpected tool_use_id found in tool_result blocks: "
                                          f"{b['tool_use_id']}; each tool_result block must have "
                                          "a corresponding tool_use block in the previous message")


def _check_tools(c: _Checker, tools: Any) -> set[str]:
    names: set[str] = set()
    if tools is None:
        return names
    if not isinstance(tools, list):
        c.add("tools", "must be a list")
        return names
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            c.add(where, "must be an object")
            continue
        c.cache_control(where, tool)
        name = tool.get("name")
        if isinstance(name, str):
            if name in names:
                c.add(f"{where}.name", f"tool names must be unique: {name}")
            names.add(name)
        if tool.get("type") not in (None, "custom"):
            continue  # server tools (web_search_…, bash_…) have their own shapes
        if not isinstance(name, str) or not TOOL_NAME_RE.match(name):
            c.add(f"{where}.name", "must match ^[a-zA-Z0-9_-]{1,64}$")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            c.add(f"{where}.input_schema", "must be an object with type 'object'")
        if "description" in tool and not isinstance(tool["description"], str):
            c.add(f"{where}.description", "must be a string")
    return names


def _check_system(c: _Checker, body: dict) -> None:
    system = body.get("system")
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        c.add("system", "must be a string or a list of text blocks")
        return
    for i, block in enumerate(system):
        where = f"system.{i}"
        if not isinstance(block, dict) or block.get("type") != "text":
            c.add(where, "system blocks must be text blocks")
            continue
        c.cache_control(where, block)
        if not isinstance(block.get("text"), str) or not block["text"]:
            c.add(where, "text content blocks must be non-empty")


def _check_sampling(c: _Checker, body: dict) -> None:
    for name in ("temperature", "top_p"):
        if name in body and (not _is_number(body[name]) or not 0 <= body[name] <= 1):
            c.add(name, "must be a number between 0 and 1")
    if "top_k" in body and (not _is_int(body["top_k"]) or body["top_k"] < 0):
        c.add("top_k", "must be an integer >= 0")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list)
                              or not all(isinstance(s, str) and s for s in stops)):
        c.add("stop_sequences", "must be a list of non-empty strings")
    if "stream" in body and not isinstance(body["stream"], bool):
        c.add("stream", "must be a boolean")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            c.add("metadata", "must be an object")
        elif metadata.get("user_id") is not None and not isinstance(metadata["user_id"], str):
            c.add("metadata.user_id", "must be a string")


def _check_thinking(c: _Checker, body: dict, max_tokens: int | None) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "disabled", "adaptive"):
        c.add("thinking.type", "must be 'enabled', 'disabled' or 'adaptive'")
        return
    if kind == "disabled":
        return
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not _is_int(budget) or budget < 1024:
            c.add("thinking.budget_tokens", "must be an integer >= 1024")
        elif max_tokens is not None and budget >= max_tokens:
            c.add("thinking.budget_tokens", "`max_tokens` must be greater than "
                                            "`thinking.budget_tokens`")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        c.add("tool_choice", "thinking may not be enabled when tool_choice forces tool use")
    if "temperature" in body and body["temperature"] != 1:
        c.add("temperature", "may only be set to 1 when thinking is enabled")
    if "top_k" in body:
        c.add("top_k", "may not be set when thinking is enabled")
    if _is_number(body.get("top_p")) and body["top_p"] < 0.95:
        c.add("top_p", "must be between 0.95 and 1 when thinking is enabled")
