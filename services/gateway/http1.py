"""A lean HTTP/1.1 keep-alive transport for the shared upstream `httpx.AsyncClient`.

The gateway talks to one kind of server (an Anthropic-compatible API) over HTTP/1.1 and
needs little of httpcore's generality, but pays for it on every call: its pool is
O(n²) in pooled connections (12 ms per request after a burst of 1,000 streams) and
anyio/h11 cost ~0.3 ms per request and ~7 µs per streamed chunk. This transport keeps
httpx's API (requests, responses, exceptions, timeouts) and replaces only the wire:

* one `asyncio.Protocol` per connection, plain TCP or TLS (`loop.create_connection`);
* a LIFO pool of idle connections per origin, bounded, with an idle expiry; a
  connection is reused only after its response body was read to the end;
* response bodies framed by Content-Length, chunked encoding or connection close; a
  chunked body is handed on as soon as bytes arrive, every complete chunk buffered so far
  in one piece (so a fast upstream costs one hand-off per read, a paced one per event);
* timeouts from the request: `connect`, `read` (the idle limit between two reads),
  `write`, `pool` (waiting for a free connection when `max_connections` are busy);
* back-pressure both ways: reading pauses while more than `READ_HIGH_WATER` bytes wait
  for a slow consumer; writing waits while the socket buffer is full.
"""
from __future__ import annotations

import asyncio
import collections
import ssl
import time
from dataclasses import dataclass, field

import httpx

READ_HIGH_WATER = 256 * 1024
MAX_HEAD_BYTES = 64 * 1024
_NO_BODY_STATUS = {204, 304}


class _Connection(asyncio.Protocol):
    """One upstream connection: a byte buffer the response reader waits on."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: tuple) -> None:
        self.loop, self.origin = loop, origin
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.idle_since = 0.0
        self.received = 0  # bytes received since the connection was last taken from the pool
        self._waiter: asyncio.Future | None = None
        self._write_waiter: asyncio.Future | None = None
        self._paused = False

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.received += len(data)
        if len(self.buffer) > READ_HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_waiter = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)
        self._write_waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # used by the transport
    @property
    def reusable(self) -> bool:
        return not self.eof and not self.buffer and self.transport is not None and not self.transport.is_closing()

    def take(self, n: int | None = None) -> bytes:
        """Remove and return the first n buffered bytes (all of them when n is None)."""
        if n is None or n >= len(self.buffer):
            data = bytes(self.buffer)
            self.buffer.clear()
        else:
            data = bytes(self.buffer[:n])
            del self.buffer[:n]
        if self._paused and len(self.buffer) < READ_HIGH_WATER // 4:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def wait_for_data(self, timeout: float | None, request: httpx.Request) -> None:
        """Wait until more bytes arrive; ReadTimeout after `timeout` s of silence,
        RemoteProtocolError if the server closed the connection."""
        if self.eof:
            raise httpx.RemoteProtocolError("The upstream closed the connection mid-response.", request=request)
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if waiter.result() == "timeout":
            raise httpx.ReadTimeout("The upstream sent nothing in time.", request=request)
        if not self.buffer and self.eof:
            raise httpx.RemoteProtocolError("The upstream closed the connection mid-response.", request=request)

    async def write(self, data: bytes, timeout: float | None, request: httpx.Request) -> None:
        if self.eof or self.transport.is_closing():
            raise httpx.WriteError("The upstream connection is closed.", request=request)
        self.transport.write(data)
        waiter = self._write_waiter
        if waiter is not None:
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except asyncio.TimeoutError:
                raise httpx.WriteTimeout("The upstream did not accept the request in time.",
                                         request=request) from None
            if self.eof:
                raise httpx.WriteError("The upstream closed the connection while we wrote.", request=request)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result("timeout")


@dataclass
class KeepAliveTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with a keep-alive pool; plug into `httpx.AsyncClient(transport=…)`."""

    max_connections: int = 2000          # open at once, all origins; more wait (pool timeout)
    max_keepalive_connections: int = 64  # idle connections kept per origin
    keepalive_expiry: float = 60.0       # an idle connection older than this is closed
    verify: ssl.SSLContext | bool = True
    _idle: dict = field(default_factory=dict)       # origin -> list of idle _Connection (LIFO)
    _open: int = 0
    _slot_waiters: collections.deque = field(default_factory=collections.deque)
    _ssl: ssl.SSLContext | None = None
    _closed: bool = False

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def idle_connections(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("transport is closed")
        timeouts = request.extensions.get("timeout", {})
        body = request.content if hasattr(request, "_content") else b"".join(
            [part async for part in request.stream])
        url = request.url
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), url.raw_path)]
        head += [b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw]
        head.append(b"\r\n")
        payload = b"".join(head) + body
        for attempt in range(2):
            conn, reused = await self._acquire(url, timeouts)
            try:
                await conn.write(payload, timeouts.get("write"), request)
                status, reason, headers = await self._read_head(conn, timeouts.get("read"), request)
                stream = _ResponseStream(self, conn, request, status, headers, timeouts.get("read"))
            except BaseException as exc:
                self._discard(conn)
                # A pooled connection the server had already closed: try once on a new one.
                if attempt == 0 and reused and isinstance(exc, (httpx.RemoteProtocolError, httpx.WriteError)) \
                        and conn.received == 0:
                    continue
                raise
            break
        return httpx.Response(status, headers=headers, stream=stream,
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason})

    async def _acquire(self, url: httpx.URL, timeouts: dict) -> tuple[_Connection, bool]:
        origin = (url.scheme, url.host, url.port)
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable and now - conn.idle_since < self.keepalive_expiry:
                conn.received = 0
                return conn, True
            self._discard(conn)
        while self._open >= self.max_connections:
            waiter = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeouts.get("pool"))
            except asyncio.TimeoutError:
                raise httpx.PoolTimeout("No upstream connection became free in time.") from None
        self._open += 1
        try:
            return await self._connect(origin, timeouts.get("connect")), False
        except BaseException:
            self._release_slot()
            raise

    async def _connect(self, origin: tuple, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = scheme == "https"
        if tls and self._ssl is None:
            self._ssl = self.verify if isinstance(self.verify, ssl.SSLContext) else \
                httpx.create_ssl_context(verify=self.verify, trust_env=False)
        port = port or (443 if tls else 80)
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: _Connection(loop, origin), host, port,
                ssl=self._ssl if tls else None, server_hostname=host if tls else None), timeout)
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout(f"Connecting to {host}:{port} timed out.") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"Cannot connect to {host}:{port}: {exc}") from None
        return conn

    async def _read_head(self, conn: _Connection, timeout, request) -> tuple[int, bytes, list]:
        while True:
            end = conn.buffer.find(b"\r\n\r\n")
            if end >= 0:
                raw = conn.take(end + 4)
                lines = raw[:-4].split(b"\r\n")
                status_line = lines[0].split(b" ", 2)
                if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
                    raise httpx.RemoteProtocolError("The upstream sent a malformed status line.", request=request)
                try:
                    status = int(status_line[1])
                except ValueError:
                    raise httpx.RemoteProtocolError("The upstream sent a malformed status line.",
                                                    request=request) from None
                headers = []
                for line in lines[1:]:
                    name, sep, value = line.partition(b":")
                    if not sep:
                        raise httpx.RemoteProtocolError("The upstream sent a malformed header.", request=request)
                    headers.append((name.strip(), value.strip()))
                if 100 <= status < 200:  # interim response (100 Continue): the real one follows
                    continue
                return status, status_line[2] if len(status_line) > 2 else b"", headers
            if len(conn.buffer) > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError("The upstream's response head is too large.", request=request)
            await conn.wait_for_data(timeout, request)

    def _release(self, conn: _Connection, keep: bool) -> None:
        """A response finished with its connection: pool it (if clean) or close it."""
        idle = self._idle.setdefault(conn.origin, [])
        if keep and conn.reusable and not self._closed and len(idle) < self.max_keepalive_connections:
            conn.idle_since = time.monotonic()
            idle.append(conn)
        else:
            self._discard(conn)

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._release_slot()

    def _release_slot(self) -> None:
        self._open -= 1
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


class _ResponseStream(httpx.AsyncByteStream):
    """The response body, read off the connection as the caller iterates."""

    def __init__(self, transport: KeepAliveTransport, conn: _Connection, request: httpx.Request,
                 status: int, headers: list, timeout: float | None) -> None:
        self.transport, self.conn, self.request, self.timeout = transport, conn, request, timeout
        self.done = False
        self.keep_alive = True
        self.length: int | None = None
        self.chunked = False
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                if not value.isdigit():
                    raise httpx.RemoteProtocolError("The upstream sent a malformed Content-Length.",
                                                    request=request)
                self.length = int(value)
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True
            elif lname == b"connection" and b"close" in value.lower():
                self.keep_alive = False
        if request.method == "HEAD" or status in _NO_BODY_STATUS:
            self.length, self.chunked = 0, False
        elif self.length is None and not self.chunked:
            self.keep_alive = False  # body runs until the server closes
        self._chunk_left = 0  # bytes of the current chunk still to read (chunked only)
        self._crlf_due = False
        self._released = False

    async def __aiter__(self):
        conn = self.conn
        try:
            if self.chunked:
                async for data in self._chunks():
                    yield data
            elif self.length is not None:
                left = self.length
                while left:
                    if not conn.buffer:
                        await conn.wait_for_data(self.timeout, self.request)
                    data = conn.take(left)
                    left -= len(data)
                    yield data
            else:
                while True:
                    if conn.buffer:
                        yield conn.take()
                    elif conn.eof:
                        break
                    else:
                        try:
                            await conn.wait_for_data(self.timeout, self.request)
                        except httpx.RemoteProtocolError:
                            break
            self.done = True
        finally:
            await self.aclose()

    async def _chunks(self):
        """Decode chunked encoding, yielding the data of every complete chunk buffered at each
        read; a partly arrived chunk is handed on as far as it arrived."""
        conn, buf = self.conn, self.conn.buffer
        while True:
            out = []
            pos = 0
            while True:
                if self._chunk_left:
                    take = min(self._chunk_left, len(buf) - pos)
                    if take <= 0:
                        break
                    out.append(bytes(buf[pos:pos + take]))
                    pos += take
                    self._chunk_left -= take
                    if self._chunk_left:
                        break
                    self._crlf_due = True
                if self._crlf_due:  # the CRLF that ends a chunk's data
                    if len(buf) - pos < 2:
                        break
                    if buf[pos:pos + 2] != b"\r\n":
                        raise httpx.RemoteProtocolError("Malformed chunked body from the upstream.",
                                                        request=self.request)
                    pos += 2
                    self._crlf_due = False
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    if len(buf) - pos > 1024:
                        raise httpx.RemoteProtocolError("Malformed chunk size from the upstream.",
                                                        request=self.request)
                    break
                try:
                    size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
                except ValueError:
                    raise httpx.RemoteProtocolError("Malformed chunk size from the upstream.",
                                                    request=self.request) from None
                if size < 0:
                    raise httpx.RemoteProtocolError("Malformed chunk size from the upstream.",
                                                    request=self.request)
                if size == 0:
                    trailer_end = buf.find(b"\r\n\r\n", line_end)
                    if trailer_end >= 0:
                        pos = trailer_end + 4
                        conn.take(pos)
                        if out:
                            yield b"".join(out)
                        return
                    break  # wait for the (empty) trailer
                pos = line_end + 2
                self._chunk_left = size
            if pos:
                conn.take(pos)
            if out:
                # More may have arrived while the consumer had this: parse again before waiting.
                yield b"".join(out) if len(out) > 1 else out[0]
            elif not pos:
                await conn.wait_for_data(self.timeout, self.request)

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self.transport._release(self.conn, keep=self.done and self.keep_alive)
