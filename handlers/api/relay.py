"""The billed routes' base handler: parse in the subclass, relay through `services.relay`.

`TornadoSink` is the relay's sink over a Tornado request: it sets the status and headers,
writes and flushes, reports the client's disconnect, and joins the SSE heartbeat while a
stream is open.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

import tornado.web

from handlers.base import ApiHandler
from services.core.types import Principal
from services.gateway.heartbeat import StreamKeepAlive
from services.gateway.upstream import check_forwarded_headers
from services.protocols.adapter import Adapter, UpstreamRequest
from services.protocols.anthropic import with_betas


class TornadoSink:
    """One request's answer, as the relay writes it (services.gateway.relay.Sink)."""

    __slots__ = ("_callbacks", "_flushing", "_gone", "_handler", "_heartbeats", "_keepalive", "last_write")

    def __init__(self, handler: tornado.web.RequestHandler, heartbeats: StreamKeepAlive) -> None:
        self._handler, self._heartbeats = handler, heartbeats
        self._gone = False
        self._callbacks: list[Callable[[], None]] = []
        self._keepalive = b""
        self._flushing: Awaitable[None] | None = None
        self.last_write = time.monotonic()

    @property
    def closed(self) -> bool:
        # Also asked of the stream itself: a write can fail on a closed connection before
        # Tornado has run the handler's on_connection_close.
        return self._gone or self._handler.request.connection.stream.closed()

    def start(self, status: int, headers: Mapping[str, str], *, heartbeat: bytes | None = None) -> None:
        self._handler.set_status(status)
        for name, value in headers.items():
            self._handler.set_header(name, value)
        if heartbeat is not None:
            self._keepalive, self.last_write = heartbeat, time.monotonic()
            self._heartbeats.add(self)

    def write(self, data: bytes) -> Awaitable[None]:
        self._handler.write(data)
        self.last_write = time.monotonic()
        self._flushing = self._handler.flush()
        return self._flushing

    def heartbeat(self) -> None:
        # Skipped while a flush is pending: Tornado resolves only the latest of two
        # overlapping flushes, and the relay is waiting on the first.
        if self.closed or (self._flushing is not None and not self._flushing.done()):
            return
        self.write(self._keepalive).add_done_callback(lambda f: f.exception())

    def on_close(self, callback: Callable[[], None]) -> None:
        if self._gone:
            callback()
        else:
            self._callbacks.append(callback)

    def close(self) -> None:
        """The client has gone."""
        self._gone = True
        self.end()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def end(self) -> None:
        """The answer is complete: no more heartbeats."""
        self._heartbeats.discard(self)


class RelayHandler(ApiHandler):
    """Base for /v1/messages and /v1/chat/completions."""

    endpoint = "messages"

    def initialize(self) -> None:
        self.sink = TornadoSink(self, self.application.settings["keepalive"])

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self.sink.close()

    async def relay(self, principal: Principal, request: UpstreamRequest, adapter: Adapter, *,
                    query: str = "") -> None:
        """Make the billed call (services/gateway/relay.py) and finish the answer it wrote."""
        check_forwarded_headers(self.request.headers)  # before anything is held
        request = with_betas(request, self.request.headers.get("anthropic-beta"),
                             unbounded_input_tokens=self.services.settings.unbounded_input_tokens)
        self.call_model = request.model.id
        try:
            self.receipt = await self.services.relay.relay(principal, request, adapter, self.sink, request_id=self.request_id,
                                            endpoint=self.endpoint, client_headers=self.request.headers,
                                            query=query)
        finally:
            self.sink.end()
        if not self._finished:
            self.finish()
