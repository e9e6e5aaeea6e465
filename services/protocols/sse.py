"""Server-sent events: re-framing an upstream byte stream into whole events, cheaply.

The Anthropic passthrough forwards event bytes exactly as they came and parses only the
few events that carry usage or errors.
"""
from __future__ import annotations

import orjson


class EventBuffer:
    """Accumulates raw chunks and hands back complete events (each ending in a blank line)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._buf + chunk if self._buf else chunk
        if b"\r" in data:  # CRLF framing from a non-standard upstream: normalise (after joining,
            data = data.replace(b"\r\n", b"\n")  # so a CRLF split across two chunks is one)
        end = data.rfind(b"\n\n")
        if end < 0:
            self._buf = data
            return []
        self._buf = data[end + 2:]
        return [e + b"\n\n" for e in data[:end].split(b"\n\n") if e]


def event_name(event: bytes) -> bytes:
    """The `event:` field of a raw event (b"" if absent)."""
    if event.startswith(b"event:"):
        line = event[6:event.find(b"\n")]
        return line.strip()
    for line in event.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip()
    return b""


def event_data(event: bytes) -> dict | None:
    """The parsed JSON of an event's `data:` lines (None if absent or not JSON)."""
    parts = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
    if not parts:
        return None
    try:
        value = orjson.loads(b"\n".join(parts))
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
