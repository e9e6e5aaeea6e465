"""Anthropic message → OpenAI `Response` object (and its parts, shared with the stream).

Pure, synchronous, no I/O. Ids are stateless: the adapter's `resp_…` id, and item ids
`<kind>_<that id's suffix>_<output index>`; tool calls keep Anthropic's `toolu_…` ids as
`call_id`, which clients echo back unchanged.
"""
from __future__ import annotations

import base64
from typing import Any

import orjson

from services.protocols.openai_chat.request import JSON_TOOL_NAME
from services.protocols.openai_responses.request import ENVELOPE_PREFIX, ResponsesPlan

INCOMPLETE_REASONS: dict[str, str] = {
    "max_tokens": "max_output_tokens", "model_context_window_exceeded": "max_output_tokens",
    "refusal": "content_filter",
}
"""Anthropic stop reasons that end a response as `incomplete`, with the reason shown."""

ERROR_CODES: dict[str, str] = {
    "rate_limit_error": "rate_limit_exceeded", "insufficient_credits": "insufficient_quota",
    "overloaded_error": "server_error", "api_error": "server_error",
    "invalid_request_error": "invalid_prompt",
}
"""error.type → a Responses `error.code` (Codex retries server_error and stops at once for
context_length_exceeded and insufficient_quota)."""

_ITEM_PREFIX = {"reasoning": "rs", "message": "msg", "function_call": "fc", "custom_tool_call": "ctc"}


def error_code(error_type: str | None, message: str) -> str:
    """The Responses error code for an (Anthropic-style) error type and message."""
    if "prompt is too long" in message.lower() or "context window" in message.lower():
        return "context_length_exceeded"
    return ERROR_CODES.get(error_type or "", "server_error")


def encode_envelope(upstream_model: str, block: dict) -> str:
    """One thinking block, sealed for the client to replay (request.decode_envelope opens it)."""
    payload = orjson.dumps({"model": upstream_model, "blocks": [block]})
    return ENVELOPE_PREFIX + base64.urlsafe_b64encode(payload).decode().rstrip("=")


def responses_usage(usage: dict) -> dict:
    """Anthropic usage counters → Responses `usage` (input includes both cache counters)."""
    cache_write = usage.get("cache_creation_input_tokens") or 0
    cache_read = usage.get("cache_read_input_tokens") or 0
    total_input = (usage.get("input_tokens") or 0) + cache_write + cache_read
    output = usage.get("output_tokens") or 0
    details = usage.get("output_tokens_details")
    reasoning = (details.get("thinking_tokens") or 0) if isinstance(details, dict) else 0
    return {"input_tokens": total_input,
            "input_tokens_details": {"cached_tokens": cache_read, "cache_write_tokens": cache_write},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": total_input + output}


def final_status(stop_reason: str | None) -> tuple[str, dict | None]:
    """(status, incomplete_details) for an Anthropic stop reason."""
    reason = INCOMPLETE_REASONS.get(stop_reason or "")
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def response_object(plan: ResponsesPlan, response_id: str, created: int, *, status: str,
                    output: list | None = None, usage: dict | None = None,
                    incomplete: dict | None = None, error: dict | None = None) -> dict:
    """The `Response` object, echoing the request's fields (`model` is the name asked for)."""
    echo = plan.echo
    return {"id": response_id, "object": "response", "created_at": created, "status": status,
            "background": False, "error": error, "incomplete_details": incomplete,
            "instructions": echo["instructions"], "max_output_tokens": echo["max_output_tokens"],
            "model": plan.requested_model, "output": output or [],
            "parallel_tool_calls": echo["parallel_tool_calls"], "previous_response_id": None,
            "prompt_cache_key": echo["prompt_cache_key"], "reasoning": echo["reasoning"],
            "store": False, "temperature": echo["temperature"], "text": echo["text"],
            "tool_choice": echo["tool_choice"], "tools": echo["tools"], "top_p": echo["top_p"],
            "truncation": "disabled", "usage": usage, "metadata": echo["metadata"]}


def item_id(kind: str, response_id: str, index: int) -> str:
    return f"{_ITEM_PREFIX[kind]}_{response_id.removeprefix('resp_')}_{index}"


def message_item(item_id_: str, text: str, *, status: str = "completed") -> dict:
    return {"id": item_id_, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def reasoning_item(item_id_: str, plan: ResponsesPlan, block: dict) -> dict:
    """A thinking or redacted_thinking block → a reasoning item (summary and/or envelope)."""
    text = block.get("thinking") if block.get("type") == "thinking" else None
    item: dict[str, Any] = {"id": item_id_, "type": "reasoning",
                            "summary": [{"type": "summary_text", "text": text}]
                            if plan.summaries and text else []}
    if plan.encrypted:
        item["encrypted_content"] = encode_envelope(plan.upstream_model, block)
    return item


def call_kind(plan: ResponsesPlan, name: str) -> str:
    """The output item type for a tool_use block: a message (the JSON-mode tool),
    custom_tool_call (freeform tools) or function_call."""
    if plan.json_mode and name == JSON_TOOL_NAME:
        return "message"
    return "custom_tool_call" if name in plan.custom_tools else "function_call"


def call_item(item_id_: str, plan: ResponsesPlan, call_id: str, name: str, payload: str, *,
              status: str = "completed") -> dict:
    """A function_call (`payload` = arguments JSON) or custom_tool_call (`payload` = input)."""
    namespace, bare = plan.namespaced.get(name, (None, name))
    kind = call_kind(plan, name)
    item: dict[str, Any] = {"id": item_id_, "type": kind, "status": status, "call_id": call_id, "name": bare}
    if kind == "custom_tool_call":
        item["input"] = payload
    else:
        item["arguments"] = payload or "{}"
    if namespace is not None:
        item["namespace"] = namespace
    return item


def custom_input(arguments: str) -> str:
    """The freeform text inside a custom tool's Anthropic input `{"input": "…"}`."""
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return value["input"]
    return arguments


def output_items(content: list, plan: ResponsesPlan, response_id: str) -> list[dict]:
    """Anthropic content blocks → Responses output items, in order."""
    items: list[dict] = []
    for block in content or ():
        kind = block.get("type") if isinstance(block, dict) else None
        index = len(items)
        if kind == "text":
            items.append(message_item(item_id("message", response_id, index), block.get("text", "")))
        elif kind in ("thinking", "redacted_thinking"):
            items.append(reasoning_item(item_id("reasoning", response_id, index), plan, block))
        elif kind == "tool_use":
            name = block.get("name", "")
            arguments = orjson.dumps(block.get("input") or {}).decode()
            what = call_kind(plan, name)
            if what == "message":
                items.append(message_item(item_id("message", response_id, index), arguments))
            else:
                payload = custom_input(arguments) if what == "custom_tool_call" else arguments
                items.append(call_item(item_id(what, response_id, index), plan, block.get("id", ""), name, payload))
    return items


def anthropic_to_response(data: dict, plan: ResponsesPlan, *, response_id: str, created: int) -> dict:
    """Translate a non-streamed Anthropic message into a `Response` object."""
    status, incomplete = final_status(data.get("stop_reason"))
    items = output_items(data.get("content") or [], plan, response_id)
    if status == "incomplete" and items:
        items[-1]["status"] = "incomplete"
    return response_object(plan, response_id, created, status=status, output=items,
                           usage=responses_usage(data.get("usage") or {}), incomplete=incomplete)
