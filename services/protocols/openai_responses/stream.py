"""Anthropic SSE events → OpenAI Responses SSE events (the full sequence the SDK's strict
`responses.stream()` helper accepts, which Codex accepts too).

    response.created → response.in_progress
    per block: output_item.added → (content_part / summary_part).added → deltas → .done… →
               output_item.done
    response.completed | response.incomplete | response.failed

No `[DONE]` and no top-level `error` key (the SDK raises on one); every item is sent as
`output_item.done`, because Codex ignores `response.completed.output`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from services.protocols.adapter import UsageTracker
from services.protocols.openai_responses.request import ResponsesPlan
from services.protocols.openai_responses.response import (
    call_item,
    call_kind,
    custom_input,
    error_code,
    final_status,
    item_id,
    message_item,
    reasoning_item,
    response_object,
    responses_usage,
)


def sse(data: dict) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def keepalive_frame(plan: ResponsesPlan, response_id: str, created: int) -> bytes:
    """The heartbeat for long silences: a repeated `response.in_progress`. Codex's idle timer
    counts only data events (SSE comments do not reset it); the SDK accepts a repeat with the
    same response id. It carries no sequence_number, so it never disturbs the numbering."""
    return sse({"type": "response.in_progress",
                "response": response_object(plan, response_id, created, status="in_progress")})


@dataclass
class _Block:
    """Stream state of one Anthropic content block."""

    kind: str                 # message | reasoning | function_call | custom_tool_call
    output_index: int
    item_id: str
    block_type: str           # the Anthropic block type
    text: list[str] = field(default_factory=list)
    signature: str = ""
    call_id: str = ""
    name: str = ""
    summary_open: bool = False


class ResponsesStreamTranslator:
    """Feed every parsed upstream event to `feed`; write what it returns. `tracker` has folded
    the usage and end of every event fed; after the final event, later events yield b"".
    Not thread-safe (one per stream)."""

    def __init__(self, plan: ResponsesPlan, *, response_id: str, created: int) -> None:
        self.tracker = UsageTracker()
        self.plan, self.response_id, self.created = plan, response_id, created
        self.output: list[dict] = []        # finished items, in output_index order
        self._blocks: dict[int, _Block] = {}
        self._next_index = 0
        self._seq = 0
        self._stop_reason: str | None = None
        self._started = False
        self._ended = False
        self._final: tuple[bytes, dict] | None = None  # the final frame written, and its payload

    # -- framing
    def _event(self, type_: str, **fields) -> bytes:
        data = {"type": type_, "sequence_number": self._seq, **fields}
        self._seq += 1
        return sse(data)

    def _response(self, status: str, **fields) -> dict:
        return response_object(self.plan, self.response_id, self.created, status=status, **fields)

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return (self._event("response.created", response=self._response("in_progress"))
                + self._event("response.in_progress", response=self._response("in_progress")))

    # -- events
    def feed(self, event: str, data: dict) -> bytes:
        """Translate one parsed upstream event into zero or more SSE frames."""
        if self._ended:
            return b""
        event = event or data.get("type", "")
        if event == "content_block_delta":
            return self._delta(data.get("index"), data.get("delta") or {})
        if event == "content_block_start":
            return self._block_start(data.get("index"), data.get("content_block") or {})
        if event == "content_block_stop":
            return self._block_stop(data.get("index"))
        if event == "message_start":
            self.tracker.fold(event, data)
            return self._start()
        if event == "message_delta":
            self.tracker.fold(event, data)
            self._stop_reason = (data.get("delta") or {}).get("stop_reason") or self._stop_reason
            return b""
        if event == "message_stop":
            self.tracker.fold(event, data)
            return self.final()
        if event == "error":
            self.tracker.fold(event, data)
            error = data.get("error") or {}
            return self.failed(error.get("type"), error.get("message", "Upstream error"))
        return b""  # ping and unknown events

    def _block_start(self, index: int | None, block: dict) -> bytes:
        out = self._start()
        kind = block.get("type")
        position = self._next_index
        if kind == "text":
            state = _Block("message", position, item_id("message", self.response_id, position), kind)
            if block.get("text"):
                state.text.append(block["text"])
        elif kind in ("thinking", "redacted_thinking"):
            state = _Block("reasoning", position, item_id("reasoning", self.response_id, position), kind)
            if kind == "redacted_thinking":
                self._next_index += 1
                item = reasoning_item(state.item_id, self.plan, block)
                self.output.append(item)
                return (out + self._event("response.output_item.added", output_index=position,
                                          item={**item, "summary": []})
                        + self._event("response.output_item.done", output_index=position, item=item))
        elif kind == "tool_use":
            what = call_kind(self.plan, block.get("name", ""))
            state = _Block(what, position, item_id(what, self.response_id, position), kind,
                           call_id=block.get("id", ""), name=block.get("name", ""))
        else:
            return out  # server tools: nothing a Responses client can use
        self._next_index += 1
        self._blocks[index] = state
        if state.kind == "message":
            added = message_item(state.item_id, "", status="in_progress")
            added["content"] = []
            return (out + self._event("response.output_item.added", output_index=position, item=added)
                    + self._event("response.content_part.added", item_id=state.item_id, output_index=position,
                                  content_index=0, part=_text_part("")))
        if state.kind == "reasoning":
            return out + self._event("response.output_item.added", output_index=position,
                                     item={"id": state.item_id, "type": "reasoning", "summary": []})
        added = call_item(state.item_id, self.plan, state.call_id, state.name, "", status="in_progress")
        if state.kind == "function_call":
            added["arguments"] = ""
        return out + self._event("response.output_item.added", output_index=position, item=added)

    def _delta(self, index: int | None, delta: dict) -> bytes:
        state = self._blocks.get(index)
        if state is None:
            return b""
        kind = delta.get("type")
        if kind == "text_delta" or (kind == "input_json_delta" and state.kind == "message"):
            piece = delta.get("text") if kind == "text_delta" else delta.get("partial_json")
            if not piece:
                return b""
            state.text.append(piece)
            return self._event("response.output_text.delta", item_id=state.item_id,
                               output_index=state.output_index, content_index=0, delta=piece, logprobs=[])
        if kind == "thinking_delta":
            piece = delta.get("thinking") or ""
            state.text.append(piece)
            if not piece or not self.plan.summaries:
                return b""
            out = b""
            if not state.summary_open:
                state.summary_open = True
                out = self._event("response.reasoning_summary_part.added", item_id=state.item_id,
                                  output_index=state.output_index, summary_index=0,
                                  part={"type": "summary_text", "text": ""})
            return out + self._event("response.reasoning_summary_text.delta", item_id=state.item_id,
                                     output_index=state.output_index, summary_index=0, delta=piece)
        if kind == "signature_delta":
            state.signature += delta.get("signature") or ""
            return b""
        if kind == "input_json_delta":
            piece = delta.get("partial_json") or ""
            state.text.append(piece)
            if not piece or state.kind != "function_call":
                return b""  # custom tools: their input is known only once the JSON is whole
            return self._event("response.function_call_arguments.delta", item_id=state.item_id,
                               output_index=state.output_index, delta=piece)
        return b""  # citations_delta

    def _block_stop(self, index: int | None) -> bytes:
        state = self._blocks.pop(index, None)
        if state is None:
            return b""
        text = "".join(state.text)
        where = {"item_id": state.item_id, "output_index": state.output_index}
        out = b""
        if state.kind == "message":
            item = message_item(state.item_id, text)
            out = (self._event("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
                   + self._event("response.content_part.done", **where, content_index=0, part=_text_part(text)))
        elif state.kind == "reasoning":
            item = reasoning_item(state.item_id, self.plan, {"type": "thinking", "thinking": text,
                                                             "signature": state.signature})
            if state.summary_open:
                part = {"type": "summary_text", "text": text}
                out = (self._event("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
                       + self._event("response.reasoning_summary_part.done", **where, summary_index=0, part=part))
        elif state.kind == "function_call":
            arguments = text or "{}"
            item = call_item(state.item_id, self.plan, state.call_id, state.name, arguments)
            if not text:  # no fragments came: Codex rejects "" arguments
                out = self._event("response.function_call_arguments.delta", **where, delta=arguments)
            out += self._event("response.function_call_arguments.done", **where, arguments=arguments)
        else:
            value = custom_input(text)
            item = call_item(state.item_id, self.plan, state.call_id, state.name, value)
            out = (self._event("response.custom_tool_call_input.delta", **where, delta=value)
                   + self._event("response.custom_tool_call_input.done", **where, input=value))
        self.output.append(item)
        return out + self._event("response.output_item.done", output_index=state.output_index, item=item)

    # -- endings
    def final(self) -> bytes:
        """The final event for a stream that reached message_stop."""
        out = self._start()
        self._ended = True
        status, incomplete = final_status(self._stop_reason)
        if status == "incomplete" and self.output:
            self.output[-1]["status"] = "incomplete"
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._final_event(kind, response=self._response(
            status, output=self.output, usage=responses_usage(self.tracker.reported), incomplete=incomplete))

    def failed(self, error_type: str | None, message: str) -> bytes:
        """`response.failed` with the items finished so far (after the 200 went out)."""
        if self._ended:
            return b""
        out = self._start()
        self._ended = True
        error = {"code": error_code(error_type, message), "message": message}
        usage = responses_usage(self.tracker.reported) if self.tracker.reported else None
        return out + self._final_event("response.failed", response=self._response(
            "failed", output=self.output, usage=usage, error=error))

    def _final_event(self, type_: str, *, response: dict) -> bytes:
        data = {"type": type_, "sequence_number": self._seq, "response": response}
        frame = self._event(type_, response=response)
        self._final = (frame, data)
        return frame

    def with_cost(self, out: bytes, fields: dict) -> bytes:
        """`out`, its final event rewritten with `fields` beside the response's usage."""
        if self._final is None or not out.endswith(self._final[0]):
            return out
        frame, data = self._final
        return out[:-len(frame)] + sse({**data, "response": {**data["response"], **fields}})


def _text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
