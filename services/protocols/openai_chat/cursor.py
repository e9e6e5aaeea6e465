"""Cursor's flavour of the chat route: Responses-API-shaped bodies turned into Chat bodies.

Cursor sometimes posts `/cursor/v1/chat/completions` with a Responses body (`input`,
`instructions`, flat function tools); `responses_to_chat` rewrites it so the chat
translation (request.py) handles it like any other. The Responses API itself, with its own
answer format, is another protocol (services/protocols/openai_responses/).
"""
from __future__ import annotations

from typing import Any

from services.core.errors import InvalidRequest
from services.protocols.openai_chat.request import expect

_RESPONSES_ONLY_FIELDS = frozenset({
    "input", "instructions", "max_output_tokens", "reasoning", "text",
    "store", "previous_response_id", "truncation", "include",
})


def responses_to_chat(body: dict) -> dict:
    """Convert a Responses-API-shaped body to a Chat Completions body (PROTOCOL §7.2).

    Applied only when `input` is present and `messages` absent; otherwise `body` is returned
    unchanged. Returns a new dict (the argument is not modified). Raises InvalidRequest.
    """
    if "messages" in body or "input" not in body:
        return body
    chat = {k: v for k, v in body.items() if k not in _RESPONSES_ONLY_FIELDS}
    messages: list[dict] = []
    instructions = body.get("instructions")
    if instructions is not None:
        messages.append({"role": "system",
                         "content": expect(instructions, str, "instructions", "a string")})
    items = body["input"]
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    else:
        for i, item in enumerate(expect(items, list, "input", "a string or a list of items")):
            _append_response_item(messages, item, f"input[{i}]")
    chat["messages"] = messages

    if "tools" in body:
        tools = expect(body["tools"], list, "tools", "a list")
        chat["tools"] = [_nested_tool(t) for t in tools]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    if "max_output_tokens" in body and "max_tokens" not in body \
            and "max_completion_tokens" not in body:
        chat["max_tokens"] = body["max_output_tokens"]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        chat.setdefault("reasoning_effort", reasoning["effort"])
    text = body.get("text")
    if isinstance(text, dict):
        if isinstance(text.get("format"), dict):
            chat["response_format"] = _chat_response_format(text["format"])
        if text.get("verbosity") is not None:
            chat["verbosity"] = text["verbosity"]
    return chat


def _append_response_item(messages: list[dict], item: Any, param: str) -> None:
    """Append one Responses input item to `messages` as Chat Completions message(s)."""
    expect(item, dict, param, "an object")
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        content = item.get("content")
        if isinstance(content, list):
            content = [_chat_part(p, f"{param}.content[{j}]") for j, p in enumerate(content)]
        messages.append({"role": role, "content": content})
    elif kind == "function_call":
        call = {"id": item.get("call_id"), "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")}}
        last = messages[-1] if messages else None
        if last is not None and last.get("role") == "assistant":  # parallel calls: one message
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        if isinstance(output, list):
            output = [_chat_part(p, f"{param}.output[{j}]") for j, p in enumerate(output)]
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": output})
    elif kind not in ("reasoning", "item_reference"):  # neither can be replayed to Claude
        raise InvalidRequest(f"Input item type '{kind}' is not supported.", param=f"{param}.type")


def _chat_part(part: Any, param: str) -> dict:
    """Responses content part → Chat Completions content part."""
    expect(part, dict, param, "an object")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        chat = {"type": "text", "text": part.get("text")}
    elif kind == "refusal":
        chat = {"type": "text", "text": part.get("refusal")}
    elif kind == "input_image":
        if not isinstance(part.get("image_url"), str):
            raise InvalidRequest("input_image needs an image_url (file_id is not supported).",
                                 param=f"{param}.image_url")
        chat = {"type": "image_url", "image_url": {"url": part["image_url"]}}
    elif kind == "input_file":
        chat = {"type": "file", "file": {k: part[k] for k in ("file_data", "file_id", "filename")
                                         if k in part}}
    else:
        raise InvalidRequest(f"Content part type '{kind}' is not supported.", param=f"{param}.type")
    if "cache_control" in part:
        chat["cache_control"] = part["cache_control"]
    return chat


def _nested_tool(tool: Any) -> Any:
    """Flat Responses function tool → nested Chat tool; anything else is returned unchanged."""
    if isinstance(tool, dict) and tool.get("type") == "function" and "function" not in tool:
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        return {"type": "function", "function": fn}
    return tool


def _chat_response_format(fmt: dict) -> dict:
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    return {"type": fmt.get("type")}
