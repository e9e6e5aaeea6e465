"""The upstream transport (services/http1.py) against scripted raw HTTP/1.1 servers: body
framing in every form and split, keep-alive reuse, stale pooled connections, timeouts,
and connections never pooled after an unfinished response."""
from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gateway.http1 import KeepAliveTransport


class ScriptedServer:
    """Answers each request on a connection with the next scripted reply: a list of byte
    pieces written with a short pause between them, floats = sleep that long, a None piece =
    close the connection after the reply. A None reply closes without answering."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0
        self.server = None
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer):
        self.connections += 1
        self.tasks.add(asyncio.current_task())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                reply = self.replies.pop(0) if self.replies else None
                if reply is None:
                    break
                for piece in reply:
                    if piece is None:
                        return
                    if isinstance(piece, float):
                        await asyncio.sleep(piece)
                        continue
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.001)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self):
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


OK_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def client(**options) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=KeepAliveTransport(**options),
                             timeout=httpx.Timeout(5.0, read=options.pop("read", 5.0)))


async def post(c: httpx.AsyncClient, port: int, body: bytes = b'{"x":1}') -> tuple[httpx.Response, list[bytes]]:
    r = await c.send(c.build_request("POST", f"http://127.0.0.1:{port}/v1/messages?beta=true", content=body),
                     stream=True)
    pieces = [p async for p in r.aiter_raw()]
    await r.aclose()
    return r, pieces


@pytest.mark.gen_test
async def test_content_length_body_and_keep_alive_reuse():
    body = b'{"ok":true}'
    reply = [b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nrequest-id: req_1\r\n\r\n%s" % (len(body), body)]
    server = ScriptedServer([reply] * 3)
    port = await server.start()
    async with client() as c:
        for _ in range(3):
            r, pieces = await post(c, port)
            assert r.status_code == 200 and b"".join(pieces) == body
            assert r.headers["request-id"] == "req_1"
        assert c._transport.idle_connections == 1
    assert server.connections == 1, "three sequential requests must share one kept-alive connection"
    first = server.requests[0]
    assert first.startswith(b"POST /v1/messages?beta=true HTTP/1.1\r\n")
    assert b"\r\ncontent-length: 7\r\n" in first.lower() and first.endswith(b'{"x":1}')
    await server.stop()


@pytest.mark.gen_test
async def test_chunked_events_arrive_as_sent_and_in_order():
    events = [b"event: e%d\ndata: {}\n\n" % i for i in range(20)]
    server = ScriptedServer([[OK_HEAD, *[chunked(e)[:-5] for e in events], b"0\r\n\r\n"]])
    port = await server.start()
    async with client() as c:
        r, pieces = await post(c, port)
    assert b"".join(pieces) == b"".join(events)
    assert len(pieces) > 1, "chunks written apart must be handed on apart, not at the end"
    await server.stop()


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.binary(min_size=1, max_size=300), min_size=0, max_size=8),
       cuts=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_chunked_decoding_survives_any_split(parts, cuts):
    """However the chunked body is cut into TCP reads, the decoded bytes are the same."""
    wire = chunked(*parts)
    pieces, at = [], 0
    for cut in cuts:
        if at >= len(wire):
            break
        pieces.append(wire[at:at + cut])
        at += cut
    pieces.append(wire[at:])
    pieces = [p for p in pieces if p]

    async def run():
        server = ScriptedServer([[OK_HEAD, *pieces], [b"HTTP/1.1 204 No Content\r\n\r\n"]])
        port = await server.start()
        async with client() as c:
            _, got = await post(c, port)
            r2, _ = await post(c, port)  # the framing ended exactly: the connection is reusable
        await server.stop()
        return b"".join(got), r2.status_code, server.connections

    decoded, second_status, connections = asyncio.run(run())
    assert decoded == b"".join(parts)
    assert second_status == 204 and connections == 1


@pytest.mark.gen_test
async def test_body_until_close_is_read_and_not_pooled():
    server = ScriptedServer([[b"HTTP/1.1 200 OK\r\n\r\npart one, ", b"part two", None]])
    port = await server.start()
    async with client() as c:
        _, pieces = await post(c, port)
        assert b"".join(pieces) == b"part one, part two"
        assert c._transport.idle_connections == 0 and c._transport.open_connections == 0
    await server.stop()


@pytest.mark.gen_test
async def test_stale_pooled_connection_is_retried_on_a_new_one():
    ok = [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    # First connection: one answer, then the server closes it as the next request arrives.
    server = ScriptedServer([ok, None, ok])
    port = await server.start()
    async with client() as c:
        await post(c, port)
        r, pieces = await post(c, port)
        assert r.status_code == 200 and pieces == [b"ok"]
    assert server.connections == 2
    await server.stop()


@pytest.mark.gen_test
async def test_silent_upstream_raises_read_timeout_and_closes():
    server = ScriptedServer([[OK_HEAD, chunked(b"first")[:-5], 5.0]])
    port = await server.start()
    async with httpx.AsyncClient(transport=KeepAliveTransport(), timeout=httpx.Timeout(5.0, read=0.2)) as c:
        r = await c.send(c.build_request("POST", f"http://127.0.0.1:{port}/v1/messages", content=b"{}"),
                         stream=True)
        got = []
        with pytest.raises(httpx.ReadTimeout):
            async for piece in r.aiter_raw():
                got.append(piece)
        await r.aclose()
        assert got == [b"first"]
        assert c._transport.open_connections == 0
    await server.stop()


@pytest.mark.gen_test
async def test_abandoned_response_closes_its_connection():
    """A stream the caller stops reading (client hung up) closes the upstream connection,
    so the upstream stops generating, and is never pooled."""
    server = ScriptedServer([[OK_HEAD, chunked(b"one")[:-5], 1.0, chunked(b"two")]])
    port = await server.start()
    async with client() as c:
        r = await c.send(c.build_request("POST", f"http://127.0.0.1:{port}/v1/messages", content=b"{}"),
                         stream=True)
        async for _ in r.aiter_raw():
            break
        await r.aclose()
        assert c._transport.open_connections == 0 and c._transport.idle_connections == 0
    await server.stop()


@pytest.mark.gen_test
async def test_connection_refused_and_malformed_answers():
    async with client() as c:
        with pytest.raises(httpx.ConnectError):
            await post(c, 1)
        assert c._transport.open_connections == 0
    server = ScriptedServer([[b"NONSENSE\r\n\r\n"]])
    port = await server.start()
    async with client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await post(c, port)
    await server.stop()
    server = ScriptedServer([[OK_HEAD, b"zz\r\nbad"]])
    port = await server.start()
    async with client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await post(c, port)
    await server.stop()


@pytest.mark.gen_test
async def test_connection_limit_waits_then_times_out():
    server = ScriptedServer([[OK_HEAD, chunked(b"x")[:-5], 1.0, b"0\r\n\r\n"]] * 2)
    port = await server.start()
    async with httpx.AsyncClient(transport=KeepAliveTransport(max_connections=1),
                                 timeout=httpx.Timeout(5.0, pool=0.1)) as c:
        first = await c.send(c.build_request("POST", f"http://127.0.0.1:{port}/v1/messages", content=b"{}"),
                             stream=True)
        with pytest.raises(httpx.PoolTimeout):
            await post(c, port)
        await first.aclose()  # frees the slot (the unfinished connection is closed)
        assert c._transport.open_connections == 0
    await server.stop()


@pytest.mark.gen_test
async def test_tls_upstream_is_verified_and_kept_alive():
    """The production upstream is https: the certificate is verified against the CA given
    (the system's by default), and the TLS connection is reused."""
    import ssl

    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    body = b'{"ok":true}'
    reply = [b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)]
    server = ScriptedServer([reply] * 2)
    server.server = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.server.sockets[0].getsockname()[1]
    async with httpx.AsyncClient(transport=KeepAliveTransport(verify=client_ctx), timeout=5) as c:
        for _ in range(2):
            r = await c.post(f"https://localhost:{port}/v1/messages", content=b"{}")
            assert r.status_code == 200 and r.content == body
    assert server.connections == 1
    async with httpx.AsyncClient(transport=KeepAliveTransport(), timeout=5) as c:
        with pytest.raises(httpx.ConnectError):  # not signed by a CA the system trusts
            await c.post(f"https://localhost:{port}/v1/messages", content=b"{}")
    await server.stop()


@pytest.mark.gen_test
async def test_malformed_status_or_length_is_a_protocol_error_and_closes():
    for reply in ([b"HTTP/1.1 abc OK\r\ncontent-length: 2\r\n\r\nok"],
                  [b"HTTP/1.1 200 OK\r\ncontent-length: -2\r\n\r\nok"]):
        server = ScriptedServer([reply])
        port = await server.start()
        async with client() as c:
            with pytest.raises(httpx.RemoteProtocolError):
                await post(c, port)
            assert c._transport.open_connections == 0
        await server.stop()
