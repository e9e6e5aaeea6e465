"""The relay: one billed upstream call, from the credit hold to its settlement.

    rate limit → hold → open the upstream → pump its answer through the route's protocol
    adapter into the handler's sink → settle exactly once → receipt

The handler supplies a `Sink` (its connection: status and headers, flushed writes, a
disconnect signal); the route's protocol supplies the `UpstreamRequest` and an `Adapter`
(services/protocols/). Everything about money and the usage record happens here, in one
`try/finally`, so it can be driven without HTTP.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import orjson

from services.billing.credits import BillingService, Hold, Receipt
from services.core.errors import GatewayError, RateLimited, UpstreamError
from services.core.money import cost_micro, fmt_credits
from services.core.types import Principal, Usage
from services.gateway.metrics import Metrics
from services.gateway.ratelimit import RateLimitService
from services.gateway.settlements import PendingSettlements
from services.gateway.upstream import UpstreamService, pass_back_headers
from services.gateway.upstream_edits import served_by
from services.protocols.adapter import Adapter, UpstreamRequest
from services.protocols.sse import EventBuffer
from services.store.db import PyMongoError

log = logging.getLogger(__name__)

CLIENT_GONE = 499  # nginx's convention for "client closed the request"
STREAM_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                  "X-Accel-Buffering": "no"}  # nginx: do not buffer the stream


class Sink(Protocol):
    """Where the relay writes one client's answer: the handler implements it over its
    connection, tests in memory."""

    @property
    def closed(self) -> bool:
        """The client has gone: writes now fail or go nowhere."""

    def start(self, status: int, headers: Mapping[str, str], *, heartbeat: bytes | None = None) -> None:
        """Set the answer's status and headers, sent with the first write. A stream passes
        its `heartbeat`, the keep-alive to write whenever it has been silent a while."""

    def write(self, data: bytes) -> Awaitable[None]:
        """Write `data`; the awaitable completes once it is flushed, or fails if the client
        has gone."""

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call `callback` once when the client goes (at once if it already has)."""


@dataclass
class CallRecord:
    """One call's usage record, assembled here as the call proceeds; settlement writes it."""

    endpoint: str                       # "messages", "chat", "cursor"
    stream: bool
    usage: Usage                        # the tokens to bill (the adapter's tracker counts them)
    status: int = 200                   # what the call came to: 200, an error's status, 499
    error: str | None = None
    upstream_request_id: str | None = None
    latency_ms: float | None = None     # request received → settlement
    ttft_ms: float | None = None        # request received → first bytes of the answer
    charge_waived: bool = False         # a failed call: its tokens are recorded, not charged
    upstream: str | None = None         # the name of the upstream that served the call

    def fields(self) -> dict:
        """The usage document's descriptive fields (the tokens are `usage`'s)."""
        doc = {"endpoint": self.endpoint, "stream": self.stream, "status": self.status,
               "error": self.error, "upstream_request_id": self.upstream_request_id,
               "latency_ms": self.latency_ms}
        if self.ttft_ms is not None:
            doc["ttft_ms"] = self.ttft_ms
        if self.charge_waived:
            doc["charge_waived"] = True
        if self.upstream is not None:
            doc["upstream"] = self.upstream
        return doc


@dataclass(frozen=True)
class RelayReceipt:
    """What one relayed call came to."""

    cost: int     # micro-credits charged
    balance: int  # the user's credits (balance + held) right after settlement
    status: int   # the usage record's status
    record: CallRecord | None = None  # the usage record (tokens, latency, TTFT) for the access log
    model: str = ""
    upstream: str = ""  # the upstream host that answered


class _Call:
    """One call's billing state, shared by the relay, the pump and settlement."""

    __slots__ = ("_billing", "_pending", "_settling", "adapter", "hold", "record", "started", "stopping")

    def __init__(self, billing: BillingService, hold: Hold, adapter: Adapter, record: CallRecord,
                 started: float, pending: PendingSettlements | None = None) -> None:
        self._billing, self.hold, self.adapter, self.record, self.started = billing, hold, adapter, record, started
        self._pending = pending
        self._settling: asyncio.Future | None = None
        self.stopping = False  # the gateway is shutting down and ends this stream

    @property
    def settled(self) -> bool:
        """Settlement has begun: the record is final."""
        return self._settling is not None

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 2)

    def fail(self, status: int, error: str) -> None:
        if self._settling is None:
            self.record.status, self.record.error = status, error

    def waive(self, status: int, error: str) -> None:
        """The call failed on the upstream's side: recorded with its tokens, charged nothing."""
        if self._settling is None:
            self.fail(status, error)
            self.record.charge_waived = True

    async def settle(self) -> Receipt:
        """Settle once; later calls return the same receipt. Shielded: cancelling the caller
        cannot cut settlement in half (it completes, and the caller sees CancelledError)."""
        if self._settling is None:
            self.record.latency_ms = self.elapsed_ms()
            self._settling = asyncio.ensure_future(self._settle_or_keep())
        return await asyncio.shield(self._settling)

    async def _settle_or_keep(self) -> Receipt:
        """Settle; if the database fails, keep the settlement for retrying (the tokens were
        used) and answer with the cost it will charge and an unknown (-1) balance."""
        try:
            return await self._billing.settle(self.hold, self.record)
        except PyMongoError as exc:
            if self._pending is None:
                raise
            self._pending.keep(self.hold, self.record, exc)
            return Receipt(cost_micro(self.record.usage.total, self.hold.model.price_per_1k_micro), -1)


@dataclass
class RelayService:
    """Runs billed upstream calls (POST /v1/messages upstream, whatever the client's protocol)."""

    billing: BillingService
    upstream: UpstreamService
    ratelimit: RateLimitService
    metrics: Metrics | None = None
    pending: PendingSettlements | None = None
    _calls: set = field(default_factory=set)     # _Call of every billed call in flight
    _streams: dict = field(default_factory=dict)  # pump task -> _Call of every stream in flight
    _draining: bool = False  # shutting down: new calls are refused

    @property
    def in_flight(self) -> int:
        """Billed calls in flight (each has a hold outstanding)."""
        return len(self._calls)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    async def drain(self, grace: float) -> None:
        """For shutdown (after the server stopped accepting): let calls in flight finish for up
        to `grace` seconds, then end every stream still open with an in-band error event,
        billed for what it delivered, and wait for every call to settle."""
        self._draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._calls and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self._streams:
            log.warning("shutdown: ending %d open streams", len(self._streams))
        for pump, call in list(self._streams.items()):
            if call.settled:  # its final event is being written
                continue
            call.stopping = True
            pump.cancel()
        deadline = loop.time() + 10
        while self._calls and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def relay(self, principal: Principal, request: UpstreamRequest, adapter: Adapter, sink: Sink, *,
                    request_id: str, endpoint: str, client_headers: Mapping[str, str],
                    query: str = "") -> RelayReceipt:
        """Make one billed call and write its answer into `sink`; settles exactly once.

        Raises RateLimited or the hold's errors (nothing held), or the mapped GatewayError of
        an upstream that fails before its answer starts (the hold released, nothing charged);
        `sink` is then untouched, so the caller renders the error. Once a stream's 200 went out,
        failures are written in-band (`adapter.error_frame`) and recorded with their tokens but
        charged nothing (`charge_waived`), not raised. A client
        that goes mid-stream stops the upstream call and is billed for what was produced
        (status 499). A non-streamed answer carries x-cheaplm-credits-used/-remaining; a stream
        is settled before its final event is written, so the balance is final when it ends.
        """
        started = time.monotonic()
        if self._draining:
            raise GatewayError("The gateway is restarting; retry the request.", status=503,
                               error_type="overloaded_error", headers={"retry-after": "1"})
        try:
            await self.ratelimit.check(principal)
        except RateLimited:
            if self.metrics is not None:
                self.metrics.rate_limited.inc()
            raise
        hold = await self.billing.hold(principal, request.model, request_id=request_id,
                                       est_input_tokens=request.est_input_tokens, max_tokens=request.max_tokens)
        call = _Call(self.billing, hold, adapter, CallRecord(endpoint, request.stream, adapter.tracker.usage), started,
                     self.pending)
        response: httpx.Response | None = None
        answer: bytes | None = None
        self._calls.add(call)
        try:
            response = await self.upstream.open("/v1/messages", request.body, client_headers, query=query,
                                                 stream=request.stream, model=request.model.id)
            call.record.upstream_request_id = response.headers.get("request-id")
            call.record.upstream = served_by(response)
            if response.status_code != 200:
                raise await self.upstream.error_for(response)
            headers = pass_back_headers(response)
            headers.setdefault("request-id", request_id)
            if request.stream:
                await self._stream(response, call, sink, headers)
            else:
                answer = await self._read(response, adapter)
        except GatewayError as err:
            call.fail(err.status, err.message)
            raise
        except BaseException as exc:
            call.fail(500, type(exc).__name__)
            raise
        finally:
            try:
                if response is not None:
                    await response.aclose()
            finally:
                try:
                    receipt = await call.settle()
                finally:
                    self._calls.discard(call)
                self._observe(call, receipt)
        if answer is not None:
            sink.start(200, {**headers, "Content-Type": adapter.content_type,
                             "x-cheaplm-credits-used": fmt_credits(receipt.cost),
                             # unknown while a settlement waits for the database
                             "x-cheaplm-credits-remaining": fmt_credits(receipt.balance) if receipt.balance >= 0
                             else "unknown"})
            await _deliver(sink, answer)
        return RelayReceipt(receipt.cost, receipt.balance, call.record.status, call.record, hold.model.id,
                            response.request.url.host if response is not None else "")

    def _observe(self, call: _Call, receipt: Receipt) -> None:
        if self.metrics is None:
            return
        record = call.record
        self.metrics.call(call.hold.model.id, latency_ms=record.latency_ms, ttft_ms=record.ttft_ms,
                          tokens=record.usage.as_dict(), credits=receipt.cost)

    async def _read(self, response: httpx.Response, adapter: Adapter) -> bytes:
        """A non-streamed answer, counted and translated."""
        raw = await self.upstream.read(response)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError("The upstream failed: its answer was not JSON.") from None
        adapter.tracker.take(data.get("usage"))
        return adapter.complete(raw, data)

    async def _stream(self, response: httpx.Response, call: _Call, sink: Sink, headers: dict) -> None:
        """Pump the stream in a task of its own, which the client's disconnect cancels (that
        closes the upstream response, so generation stops at once)."""
        sink.start(200, {**headers, **STREAM_HEADERS}, heartbeat=call.adapter.keepalive)
        pump = asyncio.ensure_future(self._pump(response, call, sink))
        sink.on_close(pump.cancel)
        self._streams[pump] = call
        try:
            await pump
        except (asyncio.CancelledError, Exception):
            if call.stopping and not sink.closed and not asyncio.current_task().cancelling():
                await self._shutdown(call, sink)
                return
            if not sink.closed or asyncio.current_task().cancelling():
                raise
            self._client_gone(call)
        finally:
            self._streams.pop(pump, None)

    async def _shutdown(self, call: _Call, sink: Sink) -> None:
        """The gateway is stopping: end the stream with an in-band error event, billed for
        what it delivered (like a client that left)."""
        if not call.settled:
            tracker = call.adapter.tracker
            if not tracker.final_usage:
                tracker.usage.output_tokens = max(tracker.usage.output_tokens, tracker.estimated_output())
        await self._stream_error(call, sink, GatewayError(
            "The gateway is restarting; this stream was ended before it finished. Retry the request.",
            status=503, error_type="overloaded_error"), charge=True)

    async def _pump(self, response: httpx.Response, call: _Call, sink: Sink) -> None:
        adapter, record, tracker = call.adapter, call.record, call.adapter.tracker
        buffer = EventBuffer()
        try:
            async for chunk in response.aiter_raw():
                events = buffer.feed(chunk)
                if not events:
                    continue
                out = adapter.events(events)
                if tracker.done and not call.settled:
                    # Settle before the final event goes out, so a client that reads its
                    # balance right after the stream ends sees the settled figure.
                    if tracker.error:
                        call.waive(502, tracker.error)
                    receipt = await call.settle()
                    settled = getattr(adapter, "settled", None)  # shows the cost in the final event
                    if out and settled is not None:
                        out = settled(out, fmt_credits(receipt.cost), fmt_credits(receipt.balance))
                if out:
                    if record.ttft_ms is None:
                        record.ttft_ms = call.elapsed_ms()
                    await sink.write(out)
        except httpx.TimeoutException:
            await self._stream_error(call, sink, UpstreamError("The upstream stopped responding mid-stream."))
        except httpx.HTTPError as exc:
            await self._stream_error(call, sink, UpstreamError(f"The upstream failed mid-stream ({type(exc).__name__})."))
        else:
            if not tracker.done:
                await self._stream_error(call, sink, UpstreamError("The upstream closed the stream before it finished."))

    async def _stream_error(self, call: _Call, sink: Sink, err: GatewayError, *, charge: bool = False) -> None:
        """After the 200 went out, an error can only be reported in-band: recorded and
        settled first, like any final event, then written. The upstream's failures cost
        nothing; the gateway's own ending of a stream (`charge`) bills what was delivered."""
        log.warning("stream %s: %s", call.hold.request_id, err.message)
        (call.fail if charge else call.waive)(err.status, err.message)
        await call.settle()
        await _deliver(sink, call.adapter.error_frame(err))

    @staticmethod
    def _client_gone(call: _Call) -> None:
        """Bill what was produced: the upstream's own counts, or, when its final count never
        arrived, at least the output estimated from what was streamed."""
        if call.settled:
            return
        call.fail(CLIENT_GONE, "client disconnected")
        tracker = call.adapter.tracker
        if not tracker.final_usage:
            tracker.usage.output_tokens = max(tracker.usage.output_tokens, tracker.estimated_output())


async def _deliver(sink: Sink, data: bytes) -> None:
    """Write the answer's last bytes; a client that has gone by then is no error (the call
    is settled, and there is no one left to tell)."""
    if sink.closed:
        return
    try:
        await sink.write(data)
    except Exception:
        if not sink.closed:
            raise
