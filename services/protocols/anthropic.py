"""The Anthropic Messages API: requests prepared without re-serialising them, and the
passthrough adapter that forwards the upstream's answer.

The body is forwarded as the client sent it, byte for byte, except for the values of a
few top-level fields (`model`, a clamped `max_tokens`, a lowered thinking budget) which
are spliced in place. Thinking signatures, cache_control and unknown fields survive
untouched because they are never decoded and re-encoded. Answers go back byte for byte
too; only the few events that carry usage or errors are parsed.
"""
from __future__ import annotations

import dataclasses
import json
import re
from json.decoder import scanstring

import orjson

from services.core.errors import GatewayError, InvalidRequest
from services.gateway.catalog import CatalogService
from services.protocols.adapter import UpstreamRequest, UsageTracker
from services.protocols.sse import event_data, event_name

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
MEDIA_BLOCK_TOKENS = 1600  # worst-case tokens for one image (after the upstream scales it)
DOCUMENT_BLOCK_TOKENS = 200_000  # a base64 PDF: as much as a model's whole context


def parse_top_level(text: str) -> dict[str, tuple[object, int, int]]:
    """Decode a JSON object, returning {key: (value, start, end)} with each value's span.

    Raises ValueError if the text is not one JSON object.
    """
    ws = _WS.match
    i = ws(text, 0).end()
    if text[i:i + 1] != "{":
        raise ValueError("the body must be a JSON object")
    i = ws(text, i + 1).end()
    out: dict[str, tuple[object, int, int]] = {}
    if text[i:i + 1] == "}":
        end = i + 1
    else:
        while True:
            if text[i:i + 1] != '"':
                raise ValueError(f"expected a property name at character {i}")
            key, i = scanstring(text, i + 1)
            i = ws(text, i).end()
            if text[i:i + 1] != ":":
                raise ValueError(f"expected ':' at character {i}")
            i = ws(text, i + 1).end()
            value, end = _DECODER.raw_decode(text, i)
            out[key] = (value, i, end)
            i = ws(text, end).end()
            if text[i:i + 1] == ",":
                i = ws(text, i + 1).end()
                continue
            if text[i:i + 1] == "}":
                end = i + 1
                break
            raise ValueError(f"expected ',' or '}}' at character {i}")
    if ws(text, end).end() != len(text):
        raise ValueError("extra data after the JSON object")
    return out


def splice(text: str, fields: dict[str, tuple[object, int, int]], replace: dict[str, object]) -> str:
    """Return `text` with the values of the given top-level keys replaced (new keys appended)."""
    spans = sorted((fields[k][1], fields[k][2], json.dumps(v)) for k, v in replace.items() if k in fields)
    parts, pos = [], 0
    for start, end, new in spans:
        parts.append(text[pos:start])
        parts.append(new)
        pos = end
    parts.append(text[pos:])
    out = "".join(parts)
    extra = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in replace.items() if k not in fields]
    if extra:
        close = out.rfind("}")
        sep = ", " if fields else ""
        out = out[:close] + sep + ", ".join(extra) + out[close:]
    return out


def decode_body(raw: bytes) -> tuple[str, dict[str, tuple[object, int, int]]]:
    """Decode a request body into (text, top-level spans); raises InvalidRequest."""
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        text = raw.decode("utf-8")
        return text, parse_top_level(text)
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None


def _media_blocks(messages: list):
    """Every image and document block of the messages (tool results' too)."""
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, dict):
                continue
            if block.get("type") in ("image", "document"):
                yield block
            elif block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                yield from (b for b in block["content"] if isinstance(b, dict) and b.get("type") in ("image", "document"))


def estimate_input_tokens(raw_len: int, messages: list) -> int:
    """An upper bound on the input tokens a body can carry, for the credit hold only.

    Text (and tool JSON) is never more tokens than bytes, so every byte of the body counts
    as a token, except base64 image data, whose tokens follow the image's size in pixels:
    each image counts MEDIA_BLOCK_TOKENS (the most an image costs once the upstream has
    scaled it). A base64 PDF's pages are read as text and images, which its compressed
    bytes do not bound: it counts DOCUMENT_BLOCK_TOKENS. Sources the body does not carry
    (URL, file) are not bounded here: see `unbounded_input`."""
    tokens = raw_len + 64
    for block in _media_blocks(messages):
        source = block.get("source") if isinstance(block.get("source"), dict) else {}
        data = source.get("data")
        if block.get("type") == "image":
            if source.get("type") == "base64" and isinstance(data, str):
                tokens -= len(data)
            tokens += MEDIA_BLOCK_TOKENS
        elif source.get("type") == "base64":
            tokens += DOCUMENT_BLOCK_TOKENS
    return max(tokens, 64)


def unbounded_input(messages: list, tools: object) -> bool:
    """The request's input may exceed anything its body bounds: an image or document by
    URL or uploaded file, or a server tool (web search, web fetch, code execution…) whose
    results the upstream adds to the input."""
    if isinstance(tools, list) and any(isinstance(t, dict) and t.get("type") not in (None, "custom")
                                       for t in tools):
        return True
    for block in _media_blocks(messages):
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") not in ("base64", "text", "content"):
            return True
    return False


def _require(fields: dict, name: str, kind: type, what: str, *, required: bool = True):
    if name not in fields:
        if required:
            raise InvalidRequest(f"{name}: field required", param=name)
        return None
    value = fields[name][0]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRequest(f"{name}: must be {what}", param=name)
    return value


def prepare_messages(raw: bytes, catalog: CatalogService) -> UpstreamRequest:
    """Validate a Messages body and produce the bytes to send upstream.

    Raises InvalidRequest for malformed JSON, missing/mistyped required fields or an
    unknown model. `max_tokens` above the model's output limit is clamped; an enabled
    thinking budget that would then reach `max_tokens` is lowered below it.
    """
    text, fields = decode_body(raw)
    model = catalog.resolve(_require(fields, "model", str, "a string"))
    messages = _require(fields, "messages", list, "an array of messages")
    if not messages:
        raise InvalidRequest("messages: at least one message is required", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system") \
                or not isinstance(m.get("content"), (str, list)):
            raise InvalidRequest(f"messages.{i}: each message needs a role (user or assistant) and "
                                 f"content (a string or an array of blocks)", param=f"messages.{i}")
    max_tokens = _require(fields, "max_tokens", int, "an integer")
    if max_tokens < 1:
        raise InvalidRequest("max_tokens: must be at least 1", param="max_tokens")
    stream = _require(fields, "stream", bool, "a boolean", required=False) or False
    thinking = _require(fields, "thinking", dict, "an object", required=False)
    if "system" in fields and not isinstance(fields["system"][0], (str, list)):
        raise InvalidRequest("system: must be a string or an array of text blocks", param="system")
    tools = _require(fields, "tools", list, "an array of tools", required=False)
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) \
                or not isinstance(tool.get("type", ""), str):
            raise InvalidRequest(f"tools.{i}: each tool needs a name (a string)", param=f"tools.{i}")

    replace: dict[str, object] = {}
    if model.upstream_id != fields["model"][0]:
        replace["model"] = model.upstream_id
    if max_tokens > model.max_output:
        max_tokens = replace["max_tokens"] = model.max_output
    if thinking and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and budget >= max_tokens:
            replace["thinking"] = {**thinking, "budget_tokens": max(1024, max_tokens - 1)}
    body = splice(text, fields, replace).encode("utf-8") if replace else raw
    est = estimate_input_tokens(len(raw), messages)
    tools = fields["tools"][0] if "tools" in fields else None
    return UpstreamRequest(model, body, stream, max_tokens, est, unbounded_input(messages, tools))


CONTEXT_1M_BETA = "context-1m-2025-08-07"


# anthropic-beta values that let the input pass the model's usual context (context-1m-…).
LONG_CONTEXT_BETAS = ("context-1m",)


def with_betas(request: UpstreamRequest, anthropic_beta: str | None, *, unbounded_input_tokens: int) -> UpstreamRequest:
    """The request as the client's `anthropic-beta` header shapes its hold, on every route:
    the context-1m beta raises the model's input limit where the upstream offers a 1M
    variant (`Model.max_input_1m`); input the body cannot bound (URL or file sources, server
    tools, a long-context beta) adds the configured UNBOUNDED_INPUT_TOKENS to the estimate."""
    betas = [b.strip() for b in (anthropic_beta or "").split(",")]
    long_context = any(b.startswith(LONG_CONTEXT_BETAS) for b in betas)
    model = request.model
    if any(CONTEXT_1M_BETA in b for b in betas) and model.max_input_1m > model.max_input:
        request = dataclasses.replace(request, model=dataclasses.replace(model, max_input=model.max_input_1m))
    if request.unbounded_input or long_context:
        request = dataclasses.replace(request, est_input_tokens=request.est_input_tokens + unbounded_input_tokens)
    return request


def prepare_count_tokens(raw: bytes, catalog: CatalogService) -> bytes:
    """Validate a count_tokens body (model, messages) and return the bytes to forward."""
    text, fields = decode_body(raw)
    model = catalog.resolve(_require(fields, "model", str, "a string"))
    _require(fields, "messages", list, "an array of messages")
    if model.upstream_id == fields["model"][0]:
        return raw
    return splice(text, fields, {"model": model.upstream_id}).encode("utf-8")


# --------------------------------------------------------------------------- answers

PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def error_event(error_type: str, message: str) -> bytes:
    """An Anthropic SSE `error` event."""
    return b"event: error\ndata: " + orjson.dumps(
        {"type": "error", "error": {"type": error_type, "message": message}}) + b"\n\n"


class AnthropicPassthrough:
    """Forwards upstream bytes unchanged; parses only the events that carry usage or errors."""

    __slots__ = ("tracker",)
    content_type = "application/json"
    keepalive = PING

    def __init__(self) -> None:
        self.tracker = UsageTracker()

    def complete(self, raw: bytes, data: dict) -> bytes:
        return raw

    def events(self, events: list[bytes]) -> bytes:
        tracker = self.tracker
        for ev in events:
            # Text deltas are most of a stream: recognised by their prefix, never parsed.
            if ev.startswith(b"event: content_block_delta"):
                tracker.delta(event_data(ev))
            elif ev.startswith((b"event: message_start", b"event: message_delta", b"event: error")):
                tracker.fold(event_name(ev).decode(), event_data(ev) or {})
            elif ev.startswith(b"event: message_stop"):
                tracker.done = True
            elif not ev.startswith(b"event: "):  # other framing (id: or comments first, no space)
                self._other_framing(ev)
        return events[0] if len(events) == 1 else b"".join(events)

    def _other_framing(self, ev: bytes) -> None:
        data = event_data(ev) or {}
        name = event_name(ev).decode() or str(data.get("type", ""))
        if name == "content_block_delta":
            self.tracker.delta(data)
        else:
            self.tracker.fold(name, data)

    def error_frame(self, err: GatewayError) -> bytes:
        return error_event(err.error_type, err.message)

    def settled(self, out: bytes, credits_used: str, credits_remaining: str) -> bytes:
        """An SSE comment (which every SSE client skips) just before message_stop."""
        comment = (b": cheaplm-credits-used=" + credits_used.encode()
                   + b"\n: cheaplm-credits-remaining=" + credits_remaining.encode() + b"\n\n")
        at = out.rfind(b"event: message_stop")
        at = at if at >= 0 else 0
        return out[:at] + comment + out[at:]
