"""The relay: hold credits → call the upstream → stream or return the answer → settle once.

`RelayHandler.relay()` is shared by the Anthropic passthrough and the OpenAI translation;
what differs is an *adapter* that turns upstream bytes into client bytes.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import orjson
import tornado.iostream

from handlers.base import ApiHandler, log
from services.billing.credits import Hold, Receipt
from services.core.errors import GatewayError, UpstreamError
from services.core.money import fmt_credits
from services.core.types import Principal
from services.gateway.upstream import pass_back_headers
from services.protocols.adapter import Adapter, UpstreamRequest
from services.protocols.sse import EventBuffer

CLIENT_GONE = 499  # nginx's convention for "client closed the request"


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

    async def relay(self, principal: Principal, req: UpstreamRequest, adapter: Adapter, *,
                    upstream_path: str = "/v1/messages", query: str = "") -> None:
        """Run one billed upstream call and answer the client. Settles exactly once."""
        started = time.monotonic()
        s = self.services
        self.adapter = adapter
        body, stream = req.body, req.stream
        await s.ratelimit.check(principal)
        hold = await s.billing.hold(principal, req.model, request_id=self.request_id,
                                    est_input_tokens=req.est_input_tokens, max_tokens=req.max_tokens)
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
                adapter.tracker.take(data.get("usage"))
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
                self.services.billing.settle(call.hold, call.adapter.tracker.usage, record=call.record))
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
            tracker = call.adapter.tracker
            if not tracker.final_usage:
                tracker.usage.output_tokens = max(tracker.usage.output_tokens, tracker.estimated_output())

    async def _pump_events(self, response: httpx.Response, call: "_Call") -> None:
        adapter, record = call.adapter, call.record
        buffer = EventBuffer()
        try:
            async for chunk in response.aiter_raw():
                events = buffer.feed(chunk)
                if not events:
                    continue
                out = adapter.events(events)
                if adapter.tracker.done and not adapter.tracker.error:
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
        if adapter.tracker.error:
            record.update(status=502, error=adapter.tracker.error)
        elif not adapter.tracker.done:
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
    settling: asyncio.Future | None = None
