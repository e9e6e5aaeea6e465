"""Load generation: a minimal keep-alive HTTP/1.1 client and concurrent request loops.

The client is a raw `asyncio.Protocol` (no httpx on the hot path) so one driver process
can push well over ten thousand requests a second. For every request it records the
latency (request written → last body byte), the time to first byte, the time to first
token (first text delta in a stream) and whether the answer was complete: status 200
and, for a stream, its proper ending (`event: message_stop` / `data: [DONE]`, no
`event: error`) followed by the terminating zero-length chunk.
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Callable

now = time.perf_counter


@dataclass(frozen=True)
class Check:
    """How to judge one kind of answer."""

    name: str
    must_contain: bytes               # searched in the last 256 bytes of the body
    token: re.Pattern | None = None   # first match marks the first token (streams)
    forbidden: bytes | None = None    # e.g. an in-band error event


NON_STREAM_MESSAGES = Check("message", b'"usage"')
NON_STREAM_CHAT = Check("chat.completion", b'"usage"')
STREAM_MESSAGES = Check("messages stream", b"event: message_stop", re.compile(rb'"text_delta"'), b"event: error")
STREAM_CHAT = Check("chat stream", b"data: [DONE]", re.compile(rb'"content"\s*:\s*"[^"]'), b'"error"')


@dataclass(slots=True)
class Result:
    """One request's outcome; times in seconds from the moment the request was written."""

    ok: bool
    status: int = 0
    latency: float = 0.0
    ttfb: float | None = None
    ttft: float | None = None
    error: str | None = None
    credits_used: str | None = None  # the gateway's x-cheaplm-credits-used header, if sent


class ClientConnection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.on_token: Callable[[], None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(f"connection closed ({type(exc).__name__ if exc else 'by peer'})")

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            return
        if self._ttfb is None:
            self._ttfb = now() - self._t0
        if self._length is None and not self._chunked:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            data = self._parse_head(bytes(self._head[:end]), self._head[end + 4:])
        if self._chunked:
            self._feed_chunked(data)
        else:
            self._body += data
            if len(self._body) >= self._length:
                self._finish()

    # -- requests ---------------------------------------------------------------------
    def request(self, raw: bytes, check: Check, *, timeout: float) -> asyncio.Future:
        """Write `raw` (a whole HTTP request); the future resolves to a Result."""
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._check = check
        self._head, self._body, self._raw = bytearray(), bytearray(), bytearray()
        self._length, self._chunked, self._pos, self._need = None, False, 0, None
        self._status, self._credits, self._ttfb, self._ttft = 0, None, None, None
        self._timer = loop.call_later(timeout, self._timeout)
        self._t0 = now()
        self.transport.write(raw)
        return self._waiter

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def _parse_head(self, head: bytes, rest: bytes) -> bytes:
        lines = head.split(b"\r\n")
        self._status = int(lines[0].split(b" ", 2)[1])
        self._length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                self._length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True
            elif name == b"x-cheaplm-credits-used":
                self._credits = value.strip().decode()
        return bytes(rest)

    def _feed_chunked(self, data: bytes) -> None:
        raw = self._raw
        raw += data
        pos = self._pos
        while True:
            if self._need is None:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                self._need = int(raw[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
            need = self._need
            if len(raw) < pos + need + 2:
                break
            if need == 0:
                self._finish()
                return
            start = max(0, len(self._body) - 32)
            self._body += raw[pos:pos + need]
            if self._ttft is None and self._check.token is not None and self._check.token.search(self._body, start):
                self._ttft = now() - self._t0
                if self.on_token is not None:
                    self.on_token()
            pos += need + 2
            self._need = None
        if pos > 65536:
            del raw[:pos]
            pos = 0
        self._pos = pos

    def _finish(self) -> None:
        check, body = self._check, self._body
        tail = body[-256:]
        if self._status != 200:
            error = f"HTTP {self._status}: {bytes(body[:160]).decode(errors='replace')}"
        elif check.must_contain not in tail or (check.forbidden and check.forbidden in body):
            error = f"incomplete {check.name}: ...{bytes(tail[-120:]).decode(errors='replace')!r}"
        else:
            error = None
        self._resolve(Result(error is None, self._status, now() - self._t0, self._ttfb, self._ttft,
                             error, self._credits))

    def _timeout(self) -> None:
        self._fail("timeout")
        self.close()

    def _fail(self, error: str) -> None:
        if self._waiter is not None:
            self._resolve(Result(False, self._status, now() - self._t0, self._ttfb, self._ttft, error))

    def _resolve(self, result: Result) -> None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not waiter.done():
            waiter.set_result(result)


async def connect(host: str, port: int) -> ClientConnection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(ClientConnection, host, port)
    return conn


async def open_connections(host: str, port: int, n: int, *, parallel: int = 64) -> list[ClientConnection]:
    """Open `n` connections, at most `parallel` handshakes at a time (listen backlogs are small)."""
    gate = asyncio.Semaphore(parallel)

    async def one() -> ClientConnection:
        async with gate:
            return await connect(host, port)

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def run_load(host: str, port: int, raw: bytes, check: Check, *, concurrency: int, count: int,
                   seconds: float, timeout: float = 30.0,
                   on_token: Callable[[], None] | None = None) -> tuple[list[Result], float]:
    """Send `raw` from `concurrency` connections until `count` requests or `seconds` have passed.

    Returns (results, elapsed seconds). Connections are opened before the clock starts; a
    connection that fails is replaced.
    """
    conns = await open_connections(host, port, concurrency)
    results: list[Result] = []
    budget = count
    deadline = now() + seconds

    async def worker(conn: ClientConnection) -> None:
        nonlocal budget
        while budget > 0 and now() < deadline:
            budget -= 1
            if conn.closed:
                try:
                    conn = await connect(host, port)
                except OSError as exc:
                    results.append(Result(False, error=f"connect: {exc}"))
                    continue
            conn.on_token = on_token
            result = await conn.request(raw, check, timeout=timeout)
            results.append(result)
            if not result.ok:  # the connection's state is unknown after a failure
                conn.close()
        conn.close()

    start = now()
    await asyncio.gather(*(worker(c) for c in conns))
    return results, now() - start
