"""A fake Anthropic Messages upstream fast enough never to be the benchmark's bottleneck.

A raw `asyncio.Protocol` HTTP/1.1 server (keep-alive, Content-Length request bodies,
minimal parsing, canned answers built once) that answers `POST /v1/messages`:

* without `"stream": true`: a canned Message JSON with usage input 25 / output 150;
* with `"stream": true`: the exact Anthropic SSE sequence (message_start,
  content_block_start, ping, N content_block_delta text deltas, content_block_stop,
  message_delta with usage, message_stop), one HTTP chunk per event. Unpaced streams are
  written in a single `write()` (the fastest an upstream can be); paced streams write each
  delta on schedule.

The gateway forwards only the body (and anthropic-* headers), so a request steers its own
answer with a directive anywhere in the body text:

    [[bench deltas=50 rate=50 hold=1]]

    deltas  number of text deltas (default --deltas, 50)
    rate    pacing in tokens (deltas) per second; 0 = unpaced (default)
    hold    1 = send the first delta, then hold the stream open until released

Control routes (for the load driver, never through the gateway):
    POST /bench/release   finish every held stream now
    GET  /bench/stats     {"requests": n, "connections": n (open now), "open_streams": n}

Run: `python bench/fake_upstream.py --port 9100 [--api-key K] [--deltas 50]`.
Prints "ready <port>" on stdout once listening.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import time

DIRECTIVE = re.compile(rb"\[\[bench ([^\]]*)\]\]")
STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
HOLD_LIMIT = 300.0  # seconds a held stream waits for /bench/release before finishing anyway
MODEL = "claude-sonnet-4-20250514"
DELTA_TEXT = " lorem"


@functools.lru_cache(maxsize=None)
def message_json(deltas: int, input_tokens: int, output_tokens: int) -> bytes:
    """The non-streamed answer body."""
    return json.dumps({
        "id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "text", "text": DELTA_TEXT * deltas}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}},
        separators=(",", ":")).encode()


def sse_event(name: str, data: dict) -> bytes:
    """One SSE event framed as one HTTP/1.1 chunk."""
    event = b"event: %s\ndata: %s\n\n" % (name.encode(), json.dumps(data, separators=(",", ":")).encode())
    return b"%x\r\n%s\r\n" % (len(event), event)


@functools.lru_cache(maxsize=None)
def stream_parts(input_tokens: int, output_tokens: int) -> tuple[bytes, bytes, bytes]:
    """(prologue, one delta, epilogue) of a text stream, each already chunk-framed.

    The epilogue ends with the zero-length chunk that terminates the response body.
    """
    prologue = (
        sse_event("message_start", {"type": "message_start", "message": {
            "id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1}}})
        + sse_event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}})
        + sse_event("ping", {"type": "ping"}))
    delta = sse_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": DELTA_TEXT}})
    epilogue = (
        sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + sse_event("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                      "usage": {"output_tokens": output_tokens}})
        + sse_event("message_stop", {"type": "message_stop"})
        + b"0\r\n\r\n")
    return prologue, delta, epilogue


def content_length(head: bytes) -> int:
    """The Content-Length of a lower-cased request head (0 if absent)."""
    start = head.find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    end = head.find(b"\r\n", start + 2)
    return int(head[start + 17:end if end >= 0 else len(head)])


def response_head(status: int, content_type: str, length: int | None) -> bytes:
    framing = b"content-length: %d" % length if length is not None else b"transfer-encoding: chunked"
    return (b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\nrequest-id: req_bench\r\n%s\r\n\r\n"
            % (status, b"OK" if status == 200 else b"Error", content_type.encode(), framing))


def json_response(status: int, body: bytes) -> bytes:
    return response_head(status, "application/json", len(body)) + body


def error_response(status: int, error_type: str, message: str) -> bytes:
    return json_response(status, json.dumps({"type": "error", "error": {"type": error_type,
                                                                        "message": message}}).encode())


class FakeUpstream:
    """Shared state of one fake server: canned answers, held streams, counters."""

    def __init__(self, *, api_key: str = "", deltas: int = 50, input_tokens: int = 25,
                 output_tokens: int = 150) -> None:
        self.api_key = api_key.lower().encode()
        self.deltas = deltas
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.requests = 0
        self.connections = 0
        self.open_streams = 0
        self.release = asyncio.Event()

    def options(self, body: bytes) -> tuple[int, float, bool]:
        """(deltas, rate, hold) for this request, from its `[[bench …]]` directive if any."""
        deltas, rate, hold = self.deltas, 0.0, False
        match = DIRECTIVE.search(body) if b"[[bench" in body else None
        if match:
            for token in match.group(1).decode().split():
                key, _, value = token.partition("=")
                if key == "deltas":
                    deltas = int(value)
                elif key == "rate":
                    rate = float(value)
                elif key == "hold":
                    hold = value not in ("0", "false", "")
        return deltas, rate, hold

    def release_held(self) -> None:
        """Let every held stream finish; later holds wait for the next release."""
        self.release.set()
        self.release = asyncio.Event()


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: parse requests one at a time, answer each."""

    def __init__(self, server: FakeUpstream) -> None:
        self.server = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task | None = None  # a paced or held stream being written

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections += 1

    def connection_lost(self, exc) -> None:
        self.server.connections -= 1
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        while self.task is None:
            request = self._next_request()
            if request is None:
                return
            self._answer(*request)

    def _next_request(self) -> tuple[bytes, bytes, bytes, bytes] | None:
        """(method, path, lower-cased head, body) of the next complete request, or None."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = buf[:end].lower()
        length = content_length(head)
        if len(buf) < end + 4 + length:
            return None
        body = buf[end + 4:end + 4 + length]
        self.buf = buf[end + 4 + length:]
        method, path, _ = buf[:buf.find(b"\r\n")].split(b" ", 2)
        return method, path, head, body

    def _answer(self, method: bytes, path: bytes, head: bytes, body: bytes) -> None:
        s = self.server
        s.requests += 1
        write = self.transport.write
        if path.startswith(b"/v1/messages") and method == b"POST":
            if s.api_key and b"\r\nx-api-key: " + s.api_key + b"\r\n" not in head + b"\r\n":
                write(error_response(401, "authentication_error", "invalid x-api-key"))
            elif STREAM_TRUE.search(body):
                self._stream(body)
            else:
                deltas = s.options(body)[0]
                write(json_response(200, message_json(deltas, s.input_tokens, s.output_tokens)))
        elif path == b"/bench/release":
            s.release_held()
            write(json_response(200, b'{"released":true}'))
        elif path == b"/bench/stats":
            stats = {"requests": s.requests, "connections": s.connections, "open_streams": s.open_streams}
            write(json_response(200, json.dumps(stats).encode()))
        else:
            write(error_response(404, "not_found_error", "Not found"))

    def _stream(self, body: bytes) -> None:
        s = self.server
        deltas, rate, hold = s.options(body)
        prologue, delta, epilogue = stream_parts(s.input_tokens, s.output_tokens)
        head = response_head(200, "text/event-stream; charset=utf-8", None)
        if rate <= 0 and not hold:
            self.transport.write(head + prologue + delta * deltas + epilogue)
            return
        self.transport.write(head + prologue)
        self.task = asyncio.ensure_future(self._paced(deltas, rate, hold, delta, epilogue))

    async def _paced(self, deltas: int, rate: float, hold: bool, delta: bytes, epilogue: bytes) -> None:
        """Write deltas on a fixed schedule (no drift) or hold after the first one."""
        s = self.server
        s.open_streams += 1
        try:
            start, sent = time.monotonic(), 0
            if hold:
                self.transport.write(delta)
                sent = 1
                try:
                    await asyncio.wait_for(s.release.wait(), HOLD_LIMIT)
                except asyncio.TimeoutError:
                    pass
            for i in range(sent, deltas):
                if rate > 0:
                    await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
                self.transport.write(delta)
            self.transport.write(epilogue)
        finally:
            s.open_streams -= 1
            self.task = None
        if self.buf:  # a request that arrived while streaming (a pipelining client)
            self.data_received(b"")


async def serve(port: int, *, host: str = "127.0.0.1", **options) -> asyncio.AbstractServer:
    """Start a fake upstream; returns the listening server."""
    state = FakeUpstream(**options)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: UpstreamProtocol(state), host, port, backlog=4096)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--api-key", default="", help="require this x-api-key (default: accept any)")
    parser.add_argument("--deltas", type=int, default=50, help="text deltas per stream by default")
    parser.add_argument("--input-tokens", type=int, default=25)
    parser.add_argument("--output-tokens", type=int, default=150)
    args = parser.parse_args()
    server = await serve(args.port, host=args.host, api_key=args.api_key, deltas=args.deltas,
                         input_tokens=args.input_tokens, output_tokens=args.output_tokens)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
