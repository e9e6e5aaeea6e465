"""What the relay needs from a protocol: a prepared request, an adapter, one usage tracker.

Every route reaches the same Anthropic-compatible upstream; a route's protocol prepares
the `UpstreamRequest` and supplies an `Adapter` that turns the upstream's answer into its
clients' format. Each adapter counts the call's tokens with a `UsageTracker`, the only code
that reads usage out of an upstream answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from services.core.errors import GatewayError
from services.core.types import Model, Usage
from services.protocols.sse import event_data, event_name

# Text runs about 4 bytes a token (English prose; code and other scripts run denser).
BYTES_PER_TOKEN = 4
# The generated text a content_block_delta carries, by delta type.
_DELTA_TEXT = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


@dataclass(frozen=True)
class UpstreamRequest:
    """A validated client request, ready to forward: what the relay sends and holds for."""

    model: Model
    body: bytes            # the Messages API body to POST upstream
    stream: bool
    max_tokens: int
    est_input_tokens: int  # an upper bound on the input the body carries, for the credit hold only
    unbounded_input: bool = False  # the input may exceed what the body bounds (URL sources, server tools…)


class UsageTracker:
    """Counts one call's tokens from the upstream's (Anthropic) answer and notes how it ended.

    Fed the usage-bearing events of a stream (`message_start`, `message_delta`,
    `message_stop`, `error`) through `fold`, every parsed `content_block_delta` through
    `delta`, or a whole message's `usage` through `take`. Counters keep their latest value,
    never a sum (Anthropic repeats them cumulatively).
    """

    __slots__ = ("usage", "reported", "final_usage", "done", "error", "_delta_events", "_text_bytes")

    def __init__(self) -> None:
        self.usage = Usage()                # what is billed
        self.reported: dict[str, Any] = {}  # every counter reported (OpenAI's usage shows details)
        self.final_usage = False            # the final (message_delta) counts arrived
        self.done = False                   # the stream reached message_stop or an error
        self.error: str | None = None       # "type: message" of an upstream error event
        self._delta_events = 0  # deltas that carried generated text
        self._text_bytes = 0    # UTF-8 bytes of that text

    def take(self, counters: Any) -> None:
        """Fold one Anthropic `usage` object (ignored unless it is an object)."""
        if isinstance(counters, dict):
            self.usage.update(counters)
            self.reported.update((k, v) for k, v in counters.items() if v is not None)

    def fold(self, name: str, data: dict) -> None:
        """Fold one parsed stream event; events that carry no usage or end are ignored."""
        if name == "message_start":
            self.take((data.get("message") or {}).get("usage"))
        elif name == "message_delta":
            self.take(data.get("usage"))
            self.final_usage = True
        elif name == "message_stop":
            self.done = True
        elif name == "error":
            err = data.get("error") or {}
            self.error = f"{err.get('type', 'error')}: {err.get('message', '')}"
            self.done = True

    def delta(self, data: dict | None) -> None:
        """Count the generated text (text, thinking or tool input) of one parsed
        content_block_delta event; others (signatures, citations) carry none."""
        delta = (data or {}).get("delta")
        text = delta.get(_DELTA_TEXT.get(delta.get("type"), "")) if isinstance(delta, dict) else None
        if isinstance(text, str) and text:
            self._delta_events += 1
            self._text_bytes += len(text.encode("utf-8", "replace"))

    def estimated_output(self) -> int:
        """Output tokens streamed so far, estimated from the text itself: used only when a
        stream broke before the upstream's own final count arrived. Every text-bearing
        delta is at least one token and text runs about BYTES_PER_TOKEN bytes a token; never
        more than the text's bytes (no token is shorter than a byte)."""
        return min(self._text_bytes, max(self._delta_events, self._text_bytes // BYTES_PER_TOKEN))


class Adapter(Protocol):
    """Turns the upstream's answer into what one route's clients expect; one per request."""

    content_type: str      # of a non-streamed answer
    keepalive: bytes       # the SSE heartbeat written after silence in a stream
    tracker: UsageTracker  # the call's tokens, and how its stream ended

    def complete(self, raw: bytes, data: dict) -> bytes:
        """The client's body for a non-streamed answer (the upstream's JSON, raw and parsed)."""

    def events(self, events: list[bytes]) -> bytes:
        """The bytes to send for whole upstream SSE events (b"" for none); feeds `tracker`."""

    def error_frame(self, err: GatewayError) -> bytes:
        """An in-band error event, for a failure after the stream's 200 went out."""

    def settled(self, out: bytes, credits_used: str, credits_remaining: str) -> bytes:
        """Optional: the stream's last bytes (holding its final event), rewritten once the call
        is settled to show what it cost, in a form the route's SDKs ignore."""


def translate_events(events: list[bytes], tracker: "UsageTracker", feed) -> bytes:
    """Run whole upstream events through a translator's `feed(name, data)`, counting each
    content delta's text with `tracker`: the loop every translating adapter shares."""
    out = []
    for ev in events:
        data = event_data(ev)
        if data is None:
            continue
        name = event_name(ev).decode() or str(data.get("type", ""))
        if name == "content_block_delta":
            tracker.delta(data)
        out.append(feed(name, data))
    return b"".join(out)
