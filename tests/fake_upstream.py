"""A fake Anthropic Messages API (tornado), run in-process by tests or standalone.

    up = FakeUpstream()
    base_url = await up.start()          # "http://127.0.0.1:PORT"
    up.enqueue(Scenario(text="hi", chunks=3), Scenario(status=529))
    ...                                   # point the gateway at base_url, send requests
    assert up.requests[0].json["model"] == "claude-sonnet-4-6"
    await up.stop()

Standalone: `python -m tests.fake_upstream --port 9100`. A `[[scenario: chunks=50 delay=0.02]]`
directive in the last user message steers a single request without Python access.
It answers with real SSE framing (every event flushed at once) and records what it received.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import tornado.httpserver
import tornado.netutil
import tornado.web
from tornado.iostream import StreamClosedError

try:  # imported as `tests.fake_upstream` (python -m / rootdir on sys.path) or top-level
    from tests.anthropic_validator import validate_request
except ImportError:  # pragma: no cover
    from anthropic_validator import validate_request

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 504: "timeout_error",
               529: "overloaded_error"}
ERROR_MESSAGES = {401: "invalid x-api-key", 403: "Your API key does not have permission",
                  404: "Not found", 413: "Request exceeds the maximum allowed number of bytes",
                  429: "Number of request tokens has exceeded your rate limit",
                  500: "Internal server error", 529: "Overloaded"}
DIRECTIVE_RE = re.compile(r"\[\[scenario:(.*?)\]\]", re.S)


@dataclass
class Scenario:
    """What the fake answers for one request. Every field has a usable default."""
    text: str = "Hello from the fake upstream."
    chunks: int | None = None          # exact number of text deltas (None: about 5)
    delay: float = 0.0                 # seconds slept before each delta
    tool_calls: list[dict] = field(default_factory=list)  # [{"name": ..., "input": {...}}]
    thinking: str | None = None        # a thinking block first, with a signature_delta
    signature: str = "EqQBCkYIARgCKkBfakeSignature=="
    stop_reason: str | None = None     # default end_turn, or tool_use with tool_calls
    usage: dict = field(default_factory=lambda: {"input_tokens": 25, "output_tokens": 150})
    status: int = 200                  # non-200: documented Anthropic error JSON
    error_message: str | None = None   # that error's message (default: the status's usual one)
    error_after: int | None = None     # stream: `event: error` after this many text deltas
    hang: bool = False                 # send nothing until the client disconnects
    model: str | None = None           # default: echo the request's model


@dataclass(eq=False)
class Recorded:
    """One request received by the fake, and what became of it."""
    method: str
    path: str
    query: str
    headers: dict[str, str]            # lower-case names
    raw_body: bytes
    json: Any = None                   # parsed body, or None if absent / not JSON
    scenario: Scenario | None = None   # None for requests rejected before one was picked
    status: int = 0                    # HTTP status answered (0 while hanging)
    events_sent: int = 0               # SSE events written and flushed
    disconnected: bool = False         # the client left before the answer was complete
    finished: bool = False             # the whole planned answer was written
    done: asyncio.Event = field(default_factory=asyncio.Event)  # set when the handler returns


def split_text(text: str, pieces: int | None) -> list[str]:
    """Split `text` into `pieces` deltas (None: about 5) whose concatenation is the text.

    When `pieces` exceeds the number of words, words are repeated to produce that many deltas.
    """
    words = re.findall(r"\s*\S+\s*|\s+", text)
    if not words or pieces == 0:
        return []
    if pieces is None:
        pieces = min(5, len(words))
    if pieces > len(words):
        return [(" " if i else "") + words[i % len(words)].strip() for i in range(pieces)]
    size, extra = divmod(len(words), pieces)
    out, start = [], 0
    for i in range(pieces):
        end = start + size + (1 if i < extra else 0)
        out.append("".join(words[start:end]))
        start = end
    return out


def sample_input(schema: Any) -> dict:
    """A minimal input object satisfying the `required` properties of a JSON schema."""
    if not isinstance(schema, dict):
        return {}
    samples = {"string": "fake", "integer": 1, "number": 1, "boolean": True,
               "array": [], "object": {}}
    props = schema.get("properties") or {}
    out = {}
    for name in schema.get("required") or []:
        prop = props.get(name) or {}
        out[name] = prop["enum"][0] if prop.get("enum") else samples.get(prop.get("type"), "fake")
    return out


def parse_directive(body: dict) -> dict | None:
    """Scenario overrides from a `[[scenario: k=v ...]]` directive in the last user message."""
    users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return None
    content = users[-1].get("content")
    if isinstance(content, list):
        content = " ".join(b.get("text", "") for b in content
                           if isinstance(b, dict) and isinstance(b.get("text"), str))
    match = DIRECTIVE_RE.search(content) if isinstance(content, str) else None
    if not match:
        return None
    try:
        tokens = shlex.split(match.group(1))
    except ValueError:
        tokens = match.group(1).split()
    schemas = {t.get("name"): t.get("input_schema") for t in body.get("tools") or []
               if isinstance(t, dict)}
    converters = {"chunks": int, "delay": float, "status": int, "error_after": int,
                  "stop_reason": str, "thinking": str, "text": str, "model": str,
                  "hang": lambda v: v.lower() in ("1", "true", "yes", "on")}
    out: dict[str, Any] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        try:
            if key == "tool":
                out["tool_calls"] = [{"name": n, "input": sample_input(schemas.get(n))}
                                     for n in value.split(",") if n]
            elif key in converters:
                out[key] = converters[key](value if sep else "true")  # bare `hang`
        except ValueError:
            pass  # a malformed value is ignored, like an unknown key
    return out


class FakeUpstream:
    """An in-process fake of the Anthropic API; see the module docstring."""

    api_key = "upstream-test-key"

    def __init__(self, *, api_key: str | None = "upstream-test-key", validate: bool = True) -> None:
        self.api_key = api_key            # None: accept any key
        self.validate = validate
        self.default = Scenario()
        self.requests: list[Recorded] = []
        self.base_url = ""
        self._queue: deque[Scenario] = deque()
        self._server: tornado.httpserver.HTTPServer | None = None
        self.app = tornado.web.Application([
            (r"/v1/messages", _Handler, {"upstream": self, "endpoint": "messages"}),
            (r"/v1/messages/count_tokens", _Handler, {"upstream": self, "endpoint": "count"}),
            (r"/.*", _Handler, {"upstream": self, "endpoint": "other"}),
        ])

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1:`port` (0 = any free port); return the base URL."""
        sockets = tornado.netutil.bind_sockets(port, "127.0.0.1")
        self._server = tornado.httpserver.HTTPServer(self.app, max_body_size=64 * 1024 * 1024)
        self._server.add_sockets(sockets)
        self.base_url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening and close open connections (which ends hanging or slow answers)."""
        if self._server is not None:
            self._server.stop()
            await asyncio.wait_for(self._server.close_all_connections(), 5)
            self._server = None

    def enqueue(self, *scenarios: Scenario) -> None:
        """Answer the next requests with these scenarios, in order, then with `self.default`."""
        self._queue.extend(scenarios)

    def pick_scenario(self, body: dict) -> Scenario:
        """A directive in the body wins (over `default`, without consuming the queue)."""
        overrides = parse_directive(body)
        if overrides is not None:
            return replace(self.default, **overrides)
        return self._queue.popleft() if self._queue else self.default


class _Handler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def initialize(self, upstream: FakeUpstream, endpoint: str) -> None:
        self.upstream, self.endpoint = upstream, endpoint

    def prepare(self) -> None:
        req = self.request
        self.n = len(self.upstream.requests) + 1
        self.rec = Recorded(method=req.method, path=req.path, query=req.query,
                            headers={k.lower(): v for k, v in req.headers.get_all()},
                            raw_body=req.body)
        self.upstream.requests.append(self.rec)
        self.closed = asyncio.Event()
        self.set_header("request-id", f"req_fake_{self.n}")
        self.set_header("anthropic-ratelimit-requests-remaining", "999")
        self.set_header("anthropic-ratelimit-tokens-remaining", "99999")

    def on_connection_close(self) -> None:
        self.closed.set()
        if not self.rec.finished:
            self.rec.disconnected = True

    async def get(self, *_: str) -> None:
        try:
            await self.serve()
        except StreamClosedError:
            self.rec.disconnected = True
        finally:
            self.rec.done.set()

    head = post = put = patch = delete = options = get

    async def serve(self) -> None:
        rec, headers = self.rec, self.rec.headers
        if self.endpoint == "other" or self.request.method != "POST":
            return self.error(404, f"Not found: {self.request.method} {self.request.path}")
        key = self.upstream.api_key
        if key is not None and headers.get("x-api-key") != key \
                and headers.get("authorization") != f"Bearer {key}":
            return self.error(401)
        if "anthropic-version" not in headers:
            return self.error(400, "anthropic-version: header is required")
        try:
            rec.json = orjson.loads(rec.raw_body)
        except orjson.JSONDecodeError as exc:
            return self.error(400, f"The request body is not valid JSON: {exc}")
        if not isinstance(rec.json, dict):
            return self.error(400, "The request body must be a JSON object")
        body = rec.json
        sc = rec.scenario = self.upstream.pick_scenario(body)
        if self.upstream.validate:
            problems = validate_request(body, count_tokens=self.endpoint == "count",
                                        betas=headers.get("anthropic-beta", ""))
            if problems:
                return self.error(400, "; ".join(problems))
        if sc.hang:
            await self.closed.wait()
            return
        if sc.status != 200:
            return self.error(sc.status, sc.error_message)
        if self.endpoint == "count":
            dumped = json.dumps(body.get("messages", [])) + json.dumps(body.get("system", ""))
            return self.reply({"input_tokens": max(1, len(dumped) // 4)})
        reply = _Reply(sc, body, self.n)
        if body.get("stream") is True:
            await self.stream(reply)
        elif sc.error_after is not None:
            self.error(529)  # a non-streamed answer can only fail as a whole
        else:
            await self.pause(sc.delay * reply.delta_count)
            self.reply(reply.message())

    def reply(self, payload: dict) -> None:
        self.rec.status = self.get_status()
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(payload))
        self.rec.finished = True

    def error(self, status: int, message: str | None = None) -> None:
        error_type = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        self.set_status(status, reason="Overloaded" if status == 529 else None)
        if status == 429:
            self.set_header("retry-after", "1")
        self.reply(_error_body(error_type, message or ERROR_MESSAGES.get(status, "Error"), self.n))

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake at once (raising StreamClosedError) if the client goes away."""
        if seconds > 0:
            try:
                await asyncio.wait_for(self.closed.wait(), seconds)
            except asyncio.TimeoutError:
                pass
        if self.closed.is_set():
            raise StreamClosedError()

    async def send(self, event: str, data: dict) -> None:
        if self.closed.is_set():
            raise StreamClosedError()
        self.write(b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")
        await self.flush()
        self.rec.events_sent += 1

    async def stream(self, r: _Reply) -> None:
        sc, self.rec.status = r.sc, 200
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        await self.send("message_start", {"type": "message_start", "message": {
            **r.envelope(), "content": [], "stop_reason": None,
            "usage": {**r.input_usage, "output_tokens": 1}}})
        blocks = r.blocks()
        if not blocks:
            await self.send("ping", {"type": "ping"})
        for index, (start, deltas) in enumerate(blocks):
            await self.send("content_block_start", {"type": "content_block_start",
                                                    "index": index, "content_block": start})
            if index == 0:
                await self.send("ping", {"type": "ping"})
            for i, delta in enumerate(deltas):
                if start["type"] == "text" and sc.error_after is not None and i >= sc.error_after:
                    return await self.stream_error()
                await self.pause(sc.delay)
                await self.send("content_block_delta", {"type": "content_block_delta",
                                                        "index": index, "delta": delta})
            if start["type"] == "text" and sc.error_after is not None:
                return await self.stream_error()
            await self.send("content_block_stop", {"type": "content_block_stop", "index": index})
        if sc.error_after is not None and not r.text_pieces:
            return await self.stream_error()
        await self.send("message_delta", {
            "type": "message_delta", "delta": {"stop_reason": r.stop_reason, "stop_sequence": None},
            "usage": {**r.input_usage, "output_tokens": r.usage["output_tokens"]}})
        await self.send("message_stop", {"type": "message_stop"})
        self.rec.finished = True
        self.finish()

    async def stream_error(self) -> None:
        await self.send("error", _error_body("overloaded_error", "Overloaded", self.n))
        self.rec.finished = True
        self.finish()


def _error_body(error_type: str, message: str, n: int) -> dict:
    return {"type": "error", "error": {"type": error_type, "message": message},
            "request_id": f"req_fake_{n}"}


class _Reply:
    """The answer a scenario produces, shared by the streamed and non-streamed paths."""

    def __init__(self, sc: Scenario, body: dict, n: int) -> None:
        self.sc, self.n = sc, n
        self.model = sc.model or body.get("model") or "claude-fake"
        self.text_pieces = split_text(sc.text, sc.chunks)
        self.thinking_pieces = split_text(sc.thinking, 3) if sc.thinking else []
        self.tools = [(f"toolu_fake_{n}_{i}", t["name"], t.get("input") or {})
                      for i, t in enumerate(sc.tool_calls)]
        self.stop_reason = sc.stop_reason or ("tool_use" if self.tools else "end_turn")
        self.usage = {"input_tokens": 25, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 150, **sc.usage}
        self.input_usage = {k: v for k, v in self.usage.items()
                            if k in ("input_tokens", "cache_creation_input_tokens", "cache_creation",
                                     "cache_read_input_tokens")}

    def envelope(self) -> dict:
        return {"id": f"msg_fake_{self.n}", "type": "message", "role": "assistant",
                "model": self.model, "stop_sequence": None}

    def blocks(self) -> list[tuple[dict, list[dict]]]:
        """(content_block_start payload, deltas) per block, in order thinking/text/tool_use."""
        out = []
        if self.sc.thinking is not None:
            deltas = [{"type": "thinking_delta", "thinking": p} for p in self.thinking_pieces]
            deltas.append({"type": "signature_delta", "signature": self.sc.signature})
            out.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
        if self.text_pieces:
            out.append(({"type": "text", "text": ""},
                        [{"type": "text_delta", "text": p} for p in self.text_pieces]))
        for tool_id, name, args in self.tools:
            encoded = json.dumps(args)
            step = max(1, -(-len(encoded) // 3))  # about three fragments after the empty one
            fragments = [""] + [encoded[i:i + step] for i in range(0, len(encoded), step)]
            out.append(({"type": "tool_use", "id": tool_id, "name": name, "input": {}},
                        [{"type": "input_json_delta", "partial_json": f} for f in fragments]))
        return out

    @property
    def delta_count(self) -> int:
        return sum(len(deltas) for _, deltas in self.blocks())

    def message(self) -> dict:
        content: list[dict] = []
        if self.sc.thinking is not None:
            content.append({"type": "thinking", "thinking": self.sc.thinking,
                            "signature": self.sc.signature})
        if self.text_pieces:
            content.append({"type": "text", "text": "".join(self.text_pieces)})
        content += [{"type": "tool_use", "id": i, "name": name, "input": args}
                    for i, name, args in self.tools]
        return {**self.envelope(), "content": content, "stop_reason": self.stop_reason,
                "usage": self.usage}


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--api-key", default=FakeUpstream.api_key,
                        help="key clients must send ('' accepts any)")
    parser.add_argument("--no-validate", action="store_true", help="accept invalid bodies")
    args = parser.parse_args()
    up = FakeUpstream(api_key=args.api_key or None, validate=not args.no_validate)
    print(f"fake upstream listening on {await up.start(args.port)}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(_main())
    except KeyboardInterrupt:
        pass
