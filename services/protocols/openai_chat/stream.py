"""Anthropic SSE events → OpenAI `chat.completion.chunk` SSE frames (PROTOCOL §7.5)."""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from services.protocols.adapter import UsageTracker
from services.protocols.openai_chat.request import JSON_TOOL_NAME, ChatPlan
from services.protocols.openai_chat.response import finish_reason, openai_usage

KEEPALIVE = b": keepalive\n\n"
"""The SSE heartbeat: a comment, which OpenAI clients skip (a bare data line would not be)."""


def error_chunk(message: str, error_type: str, code: str | None = None) -> bytes:
    """An OpenAI stream's in-band error frame."""
    return b"data: " + orjson.dumps({"error": {"message": message, "type": error_type,
                                               "code": code, "param": None}}) + b"\n\n"


@dataclass
class _ToolBlock:
    """Stream state of one Anthropic tool_use block."""

    index: int | None      # OpenAI tool_calls index; None for the synthetic JSON tool
    has_arguments: bool = False


class ChatStreamTranslator:
    """Anthropic SSE events → OpenAI `chat.completion.chunk` SSE bytes (PROTOCOL §7.5).

    Feed every parsed upstream event to `feed`; write what it returns. `done` turns True after
    `[DONE]` or an error frame; later events yield b"". `tracker` has folded the usage and the
    end of every event fed. Not thread-safe (one per stream).
    """

    def __init__(self, plan: ChatPlan, *, completion_id: str, created: int) -> None:
        self.tracker = UsageTracker()
        self._plan = plan
        self._json_mode = plan.json_mode == "tool"
        envelope = orjson.dumps({"id": completion_id, "object": "chat.completion.chunk",
                                 "created": created, "model": plan.requested_model})
        self._envelope = envelope[:-1]  # without the closing brace
        self._prefix = b"data: " + self._envelope + b',"choices":[{"index":0,"delta":'
        self._tail = (b',"logprobs":null}]'
                      + (b',"usage":null' if plan.include_usage else b"") + b"}\n\n")
        self._suffix = b',"finish_reason":null' + self._tail
        self._blocks: dict[int, _ToolBlock] = {}
        self._tool_count = 0
        self._json_seen = False
        self._held_text: list[str] = []  # JSON mode: prose held back until we know it is the answer
        self._finished = False           # finish_reason chunk sent

    @property
    def done(self) -> bool:
        return self.tracker.done

    def _chunk(self, delta: dict) -> bytes:
        return self._prefix + orjson.dumps(delta) + self._suffix

    def _content(self, text: str) -> bytes:
        if not text:
            return b""
        if self._json_mode:
            if not self._json_seen:
                self._held_text.append(text)
            return b""
        return self._chunk({"content": text})

    def feed(self, event: str, data: dict) -> bytes:
        """Translate one parsed upstream event into zero or more SSE frames."""
        if self.done:
            return b""
        event = event or data.get("type", "")
        if event == "content_block_delta":
            delta = data.get("delta") or {}
            kind = delta.get("type")
            if kind == "text_delta":
                return self._content(delta.get("text", ""))
            if kind == "thinking_delta":
                return self._chunk({"reasoning_content": delta["thinking"]}) if delta.get("thinking") else b""
            if kind == "input_json_delta":
                return self._arguments(data.get("index"), delta.get("partial_json", ""))
            return b""  # signature_delta, citations_delta
        if event == "content_block_start":
            return self._block_start(data.get("index"), data.get("content_block") or {})
        if event == "content_block_stop":
            block = self._blocks.get(data.get("index"))
            if block is not None and not block.has_arguments:
                return self._arguments(data.get("index"), "{}")
            return b""
        if event == "message_start":
            self.tracker.fold(event, data)
            return self._chunk({"role": "assistant", "content": ""})
        if event == "message_delta":
            self.tracker.fold(event, data)
            stop_reason = (data.get("delta") or {}).get("stop_reason")
            return self._finish(stop_reason) if stop_reason is not None else b""
        if event == "message_stop":
            out = self._finish(None)
            if self._plan.include_usage:
                out += (b"data: " + self._envelope + b',"choices":[],"usage":'
                        + orjson.dumps(openai_usage(self.tracker.reported)) + b"}\n\n")
            self.tracker.fold(event, data)
            return out + b"data: [DONE]\n\n"
        if event == "error":
            self.tracker.fold(event, data)
            error = data.get("error") or {}
            return error_chunk(error.get("message", "Upstream error"), error.get("type", "api_error"))
        return b""  # ping and unknown events

    def _block_start(self, index: int | None, block: dict) -> bytes:
        kind = block.get("type")
        if kind == "text":
            return self._content(block.get("text", ""))
        if kind == "thinking":
            return self._chunk({"reasoning_content": block["thinking"]}) if block.get("thinking") else b""
        if kind != "tool_use":
            return b""  # redacted_thinking, server tools: nothing an OpenAI client can use
        if self._json_mode and block.get("name") == JSON_TOOL_NAME:
            self._json_seen = True
            self._held_text.clear()
            self._blocks[index] = _ToolBlock(None)
            return b""
        self._blocks[index] = _ToolBlock(self._tool_count)
        self._tool_count += 1
        return self._chunk({"tool_calls": [{
            "index": self._tool_count - 1, "id": block.get("id"), "type": "function",
            "function": {"name": block.get("name"), "arguments": ""}}]})

    def _arguments(self, index: int | None, fragment: str) -> bytes:
        block = self._blocks.get(index)
        if block is None or not fragment:
            return b""
        block.has_arguments = True
        if block.index is None:
            return self._chunk({"content": fragment})
        return self._chunk({"tool_calls": [{"index": block.index,
                                            "function": {"arguments": fragment}}]})

    def _finish(self, stop_reason: str | None) -> bytes:
        """The finish_reason chunk (once), preceded by any prose held back in JSON mode."""
        if self._finished:
            return b""
        self._finished = True
        out = b""
        if self._held_text:
            out = self._chunk({"content": "".join(self._held_text)})
            self._held_text.clear()
        finish = finish_reason(stop_reason, json_only=self._json_seen and not self._tool_count)
        return out + self._prefix + b'{},"finish_reason":' + orjson.dumps(finish) + self._tail
