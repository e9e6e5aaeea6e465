"""Anthropic message → OpenAI `chat.completion` (PROTOCOL §7.4): pure, synchronous, no I/O."""
from __future__ import annotations

import time
from typing import Any

import orjson

from services.protocols.openai_chat.request import JSON_TOOL_NAME, ChatPlan

FINISH_REASONS: dict[str | None, str] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "refusal": "content_filter",
}


def openai_usage(usage: dict) -> dict:
    """Anthropic usage counters → OpenAI `usage` (prompt includes both cache counters)."""
    cache_write = usage.get("cache_creation_input_tokens") or 0
    cache_read = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cache_write + cache_read
    completion = usage.get("output_tokens") or 0
    details = usage.get("output_tokens_details")
    reasoning = (details.get("thinking_tokens") or 0) if isinstance(details, dict) else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cache_read, "cache_write_tokens": cache_write},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


def finish_reason(stop_reason: str | None, *, json_only: bool) -> str:
    reason = FINISH_REASONS.get(stop_reason, "stop")
    # The synthetic JSON tool is an answer, not a call the client must run.
    return "stop" if json_only and reason == "tool_calls" else reason


def anthropic_to_chat(resp: dict, plan: ChatPlan, *, completion_id: str | None = None,
                      created: int | None = None) -> dict:
    """Translate a non-streaming Anthropic message into an OpenAI `chat.completion` (§7.4)."""
    texts: list[str] = []
    thoughts: list[str] = []
    tool_calls: list[dict] = []
    json_content: str | None = None
    for block in resp.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            thoughts.append(block.get("thinking", ""))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if plan.json_mode == "tool" and block.get("name") == JSON_TOOL_NAME:
                json_content = arguments
            else:
                tool_calls.append({"id": block.get("id"), "type": "function",
                                   "function": {"name": block.get("name"), "arguments": arguments}})
    content = json_content if json_content is not None else ("".join(texts) if texts else None)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    finish = finish_reason(resp.get("stop_reason"),
                            json_only=json_content is not None and not tool_calls)
    return {"id": completion_id or f"chatcmpl-{resp.get('id', '')}",
            "object": "chat.completion",
            "created": created if created is not None else int(time.time()),
            "model": plan.requested_model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish,
                         "logprobs": None}],
            "usage": openai_usage(resp.get("usage") or {})}
