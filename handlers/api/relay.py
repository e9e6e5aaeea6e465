"""The relay: hold credits → call the upstream → stream or return the answer → settle once.

`RelayHandler.relay()` is shared by the Anthropic passthrough and the OpenAI translation;
what differs is an *adapter* that turns upstream bytes into client bytes.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import orjson
import tornado.iostream

from handlers.base import ApiHandler, log
from services.billing.credits import Hold, Receipt
from services.core.errors import GatewayError, UpstreamError
from services.core.money import fmt_credits
from services.core.types import Model, Principal, Usage
from services.gateway.upstream import pass_back_headers
from services.protocols.sse import ANTHROPIC_PING, EventBuffer, anthropic_error_event, event_data, event_name

CLIENT_GONE = 499  # nginx's convention for "client closed the request"


class Adapter(Protocol):
    """Turns upstream output into what this route's clients expect."""

    content_type: str       # non-streamed answers
    keepalive: bytes        # sent after `keepalive_interval` of silence in a stream
    error: str | None       # set when the upstream reported an error inside the stream
    saw_delta_usage: bool   # the upstream's final (message_delta) usage arrived

    def complete(self, raw: bytes, data: dict) -> bytes: ...
    def events(self, events: list[bytes], usage: Usage) -> bytes: ...
    def error_frame(self, err: GatewayError) -> bytes: ...
    def finished(self) -> bool: ...          # the stream reached its proper end (or an error)
    def estimated_output(self) -> int: ...   # output tokens streamed, if no count arrived


def note_usage(adapter, name: str, data: dict, usage: Usage) -> None:
    """Fold one parsed upstream event into the request's usage and the adapter's state."""
    if name == "message_start":
        usage.update((data.get("message") or {}).get("usage"))
    elif name == "message_delta":
        usage.update(data.get("usage"))
        adapter.saw_delta_usage = True
    elif name == "error":
        err = data.get("error") or {}
        adapter.error = f"{err.get('type', 'error')}: {err.get('message', '')}"


class AnthropicPassthrough:
    """Forwards upstream bytes unchanged; parses only the events that carry usage/errors."""

    content_type = "application/json"
    keepalive = ANTHROPIC_PING

    def __init__(self) -> None:
        self.done = False
        self.error: str | None = None
        self.saw_delta_usage = False
        self._delta_events = 0
        self._delta_bytes = 0

    def complete(self, raw: bytes, data: dict) -> bytes:
        return raw

    def events(self, events: list[bytes], usage: Usage) -> bytes:
        for ev in events:
            if ev.startswith(b"event: content_block_delta"):
                self._delta_events += 1
                self._delta_bytes += len(ev)
            elif ev.startswith((b"event: message_start", b"event: message_delta", b"event: error")):
                note_usage(self, event_name(ev).decode(), event_data(ev) or {}, usage)
                self.done = self.done or self.error is not None
            elif ev.startswith(b"event: message_stop"):
                self.done = True
            elif not ev.startswith(b"event: "):  # other framing (id: or comments first, no space)
                self._other_framing(ev, usage)
        return events[0] if len(events) == 1 else b"".join(events)

    def _other_framing(self, ev: bytes, usage: Usage) -> None:
        data = event_data(ev) or {}
        name = event_name(ev).decode() or str(data.get("type", ""))
        if name in ("message_start", "message_delta", "error"):
            note_usage(self, name, data, usage)
            self.done = self.done or self.error is not None
        elif name == "message_stop":
            self.done = True
        elif name == "content_block_delta":
            self._delta_events += 1
            self._delta_bytes += len(ev)

    def error_frame(self, err: GatewayError) -> bytes:
        return anthropic_error_event(err.error_type, err.message)

    def finished(self) -> bool:
        return self.done

    def estimated_output(self) -> int:
        # ~105 bytes of envelope per text delta; ~4 bytes of text per token. Used only when
        # the stream broke before the upstream's own final output count arrived.
        return max(self._delta_events, (self._delta_bytes - 105 * self._delta_events) // 4)


class KeepAlive:
    """One ticker for every open stream: writes the adapter's keep-alive after silence."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.streams: set[RelayHandler] = set()
        self._task: asyncio.Task | None = None

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
            for handler in list(self.streams):
                if now - handler.last_write >= self.interval:
                    handler.send_bytes(handler.adapter.keepalive)


class RelayHandler(ApiHandler):
    """Base for /v1/messages and /v1/chat/completions."""

    endpoint = "messages"
    adapter: Adapter
    last_write = 0.0

    def initialize(self) -> None:
        self._pump: asyncio.Task | None = None
        self._client_gone = False

    def on_connection_close(self) -> None:
        # The client hung up: stop the upstream generation now (the pump owns the upstream
        # response; cancelling it closes that connection) and bill what was produced.
        self._client_gone = True
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()

    def send_bytes(self, data: bytes) -> None:
        """Write and flush without awaiting (keep-alives); a closed client is ignored."""
        if self._client_gone or self._finished:
            return
        self.write(data)
        self.last_write = time.monotonic()
        self.flush().add_done_callback(lambda f: f.exception())

    async def relay(self, principal: Principal, model: Model, *, body: bytes, stream: bool,
                    max_tokens: int, est_input_tokens: int, adapter: Adapter,
                    upstream_path: str = "/v1/messages", query: str = "") -> None:
        """Run one billed upstream call and answer the client. Settles exactly once."""
        started = time.monotonic()
        s = self.services
        self.adapter = adapter
        await s.ratelimit.check(principal)
        hold = await s.billing.hold(principal, model, request_id=self.request_id,
                                    est_input_tokens=est_input_tokens, max_tokens=max_tokens)
        call = _Call(hold, adapter, started, {"endpoint": self.endpoint, "stream": stream, "status": 200,
                                              "upstream_request_id": None, "error": None})
        response: httpx.Response | None = None
        out: bytes | None = None
        try:
            response = await s.upstream.open(upstream_path, body, self.request.headers, query=query, stream=stream)
            call.record["upstream_request_id"] = response.headers.get("request-id")
            if response.status_code != 200:
                raise await s.upstream.error_for(response)
            for name, value in pass_back_headers(response).items():
                self.set_header(name, value)
            if stream:
                await self._stream(response, call)
            else:
                raw = await s.upstream.read(response)
                try:
                    data = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise UpstreamError("The upstream failed: its answer was not JSON.") from None
                call.usage.update(data.get("usage"))
                out = adapter.complete(raw, data)
        except GatewayError as err:
            call.record.update(status=err.status, error=err.message)
            raise
        except BaseException as exc:
            call.record.update(status=500, error=type(exc).__name__)
            raise
        finally:
            if response is not None:
                await response.aclose()
            receipt = await self._settle(call)
        if out is not None:
            self.set_header("Content-Type", adapter.content_type)
            if "request-id" not in self._headers:
                self.set_header("request-id", self.request_id)
            self.set_header("x-cheaplm-credits-used", fmt_credits(receipt.cost))
            self.set_header("x-cheaplm-credits-remaining", fmt_credits(receipt.balance))
            self.finish(out)
        elif not self._finished:
            self.finish()

    async def _settle(self, call: "_Call") -> Receipt:
        """Settle once. Shielded: a disconnect that cancels the pump cannot cut it in half."""
        if call.settling is None:
            call.record["latency_ms"] = round((time.monotonic() - call.started) * 1000, 2)
            call.settling = asyncio.ensure_future(
                self.services.billing.settle(call.hold, call.usage, record=call.record))
        return await asyncio.shield(call.settling)

    async def _stream(self, response: httpx.Response, call: "_Call") -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        if "request-id" not in self._headers:
            self.set_header("request-id", self.request_id)
        self.last_write = time.monotonic()
        keepalive = self.application.settings["keepalive"]
        keepalive.streams.add(self)
        self._pump = asyncio.ensure_future(self._pump_events(response, call))
        try:
            await self._pump
        except (asyncio.CancelledError, tornado.iostream.StreamClosedError):
            if not self._client_gone:
                raise
        finally:
            keepalive.streams.discard(self)
        if self._client_gone and call.settling is None:
            call.record.update(status=CLIENT_GONE, error="client disconnected")
            if not call.adapter.saw_delta_usage:
                call.usage.output_tokens = max(call.usage.output_tokens, call.adapter.estimated_output())

    async def _pump_events(self, response: httpx.Response, call: "_Call") -> None:
        adapter, record = call.adapter, call.record
        buffer = EventBuffer()
        try:
            async for chunk in response.aiter_raw():
                events = buffer.feed(chunk)
                if not events:
                    continue
                out = adapter.events(events, call.usage)
                if adapter.finished() and not adapter.error:
                    # Settle before the final event goes out, so a client that reads its
                    # balance right after the stream ends sees the settled figure.
                    await self._settle(call)
                if out:
                    if "ttft_ms" not in record:
                        record["ttft_ms"] = round((time.monotonic() - call.started) * 1000, 2)
                    self.write(out)
                    self.last_write = time.monotonic()
                    await self.flush()
        except httpx.TimeoutException:
            self._stream_error(call, UpstreamError("The upstream stopped responding mid-stream."))
            return
        except httpx.HTTPError as exc:
            self._stream_error(call, UpstreamError(f"The upstream failed mid-stream ({type(exc).__name__})."))
            return
        if adapter.error:
            record.update(status=502, error=adapter.error)
        elif not adapter.finished():
            self._stream_error(call, UpstreamError("The upstream closed the stream before it finished."))

    def _stream_error(self, call: "_Call", err: GatewayError) -> None:
        """After the 200 went out, an error can only be reported in-band."""
        call.record.update(status=err.status, error=err.message)
        log.warning("stream %s: %s", self.request_id, err.message)
        self.send_bytes(call.adapter.error_frame(err))


@dataclass
class _Call:
    """One relayed request's billing state, shared by the relay, the pump and settlement."""

    hold: Hold
    adapter: Adapter
    started: float
    record: dict
    usage: Usage = field(default_factory=Usage)
    settling: asyncio.Future | None = None
