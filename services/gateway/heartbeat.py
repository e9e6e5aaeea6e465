"""The SSE heartbeat: one ticker that writes a keep-alive event into every silent stream.

While the upstream thinks, a client's stream can stay silent for minutes; proxies and SDKs
close a connection that idle. This is not TCP keep-alive (the upstream pool's idle
connections): it writes the protocol's own harmless event (`event: ping`, `: keepalive`)
into the client's stream after `interval` seconds without a write.
"""
from __future__ import annotations

import asyncio
import time
from typing import Protocol


class HeartbeatStream(Protocol):
    """An open client stream the ticker watches."""

    last_write: float  # time.monotonic() of its last write

    def heartbeat(self) -> None:
        """Write the stream's keep-alive event now, without waiting for it to be flushed."""


class StreamKeepAlive:
    """One ticker for every open stream. The composition root starts and stops it."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._streams: set[HeartbeatStream] = set()
        self._task: asyncio.Task | None = None

    def add(self, stream: HeartbeatStream) -> None:
        self._streams.add(stream)

    def discard(self, stream: HeartbeatStream) -> None:
        self._streams.discard(stream)

    @property
    def open_streams(self) -> int:
        """Streams this process is serving now."""
        return len(self._streams)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        tick = max(0.05, min(1.0, self.interval / 4))
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for stream in list(self._streams):
                if now - stream.last_write >= self.interval:
                    stream.heartbeat()
