"""The gateway's upstream connection: TLS verified against the trusted CAs, connections kept
alive and reused, and the standard proxy variables (HTTP_PROXY, HTTPS_PROXY, NO_PROXY)
honoured. Silent and unreachable upstreams are covered in test_errors.py."""
from __future__ import annotations

import asyncio
import logging
import ssl
from urllib.parse import urlsplit

import httpx
import pytest
import tornado.httpserver
import trustme

from tests.conftest import ADMIN_TOKEN, free_port
from tests.fake_upstream import FakeUpstream

HELLO = {"model": "claude-sonnet-4", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]}
# Every variable that could route or verify the gateway's upstream calls; each test sets its own.
ENV_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
            "all_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")


class CountingServer(tornado.httpserver.HTTPServer):
    """A fake upstream's app behind a server that counts the TCP connections it accepted."""

    connections = 0

    def handle_stream(self, stream, address) -> None:
        self.connections += 1
        super().handle_stream(stream, address)


class ForwardProxy:
    """A minimal forward proxy: CONNECT tunnels (https) and absolute-URI requests (http).
    Records each request line it was asked for; serves one request per connection."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task] = set()

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, _, rest = head.partition(b"\r\n")
            method, target, version = line.decode().split(" ")
            self.seen.append(f"{method} {target}")
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                url = urlsplit(target)
                up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
                path = url.path + (f"?{url.query}" if url.query else "")
                up_writer.write(f"{method} {path} {version}\r\n".encode() + rest)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> tuple[ssl.SSLContext, str]:
    """(server context with a certificate for 127.0.0.1, path of the CA that signed it)."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return server_ctx, str(path)


@pytest.fixture
def start_gateway(gateway_factory, monkeypatch):
    """Start a gateway with these environment variables set while its upstream client is
    built (httpx reads them then), and only then: the tests' own clients see none of them."""

    def start(env: dict[str, str] | None = None, **overrides):
        with monkeypatch.context() as m:
            for name in ENV_VARS:
                m.delenv(name, raising=False)
            for name, value in (env or {}).items():
                m.setenv(name, value)
            gw = gateway_factory(**overrides)
        # The admin client was built under the same variables: replace it with one that is not.
        gw.admin.close()
        gw.admin = httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                timeout=30)
        return gw

    return start


def serve_upstream(gw, port: int, ssl_ctx: ssl.SSLContext | None = None) -> CountingServer:
    """A fake upstream on 127.0.0.1:`port`, run on the gateway's loop."""
    async def start() -> CountingServer:
        server = CountingServer(FakeUpstream().app, ssl_options=ssl_ctx)
        server.listen(port, "127.0.0.1")
        return server
    return gw.run(start())


def stop_upstream(gw, server: CountingServer) -> None:
    server.stop()
    gw.run(server.close_all_connections())


def ask(gw, key: str, *, stream: bool = False) -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages", json={**HELLO, "stream": stream},
                      headers={"x-api-key": key}, timeout=20)


def test_tls_upstream_is_verified_against_the_trusted_ca(start_gateway, tls):
    """An https upstream whose certificate the trusted CA (SSL_CERT_FILE) signed answers, over
    one kept-alive TLS connection for two calls."""
    server_ctx, ca_path = tls
    port = free_port()
    gw = start_gateway({"SSL_CERT_FILE": ca_path}, upstream_base_url=f"https://127.0.0.1:{port}")
    server = serve_upstream(gw, port, server_ctx)
    _, key = gw.user_with_key()
    for _ in range(2):
        r = ask(gw, key)
        assert r.status_code == 200, r.text
    assert server.connections == 1
    stop_upstream(gw, server)


def test_tls_upstream_with_an_untrusted_certificate_is_refused(start_gateway, tls):
    """A certificate no trusted CA signed is refused: 502, nothing debited."""
    server_ctx, _ = tls
    port = free_port()
    gw = start_gateway(upstream_base_url=f"https://127.0.0.1:{port}")
    server = serve_upstream(gw, port, server_ctx)
    username, key = gw.user_with_key()
    r = ask(gw, key)
    assert r.status_code == 502 and "could not connect" in r.json()["error"]["message"]
    assert gw.micro_balance(username) == (100_000_000, 0)
    stop_upstream(gw, server)


def test_sequential_calls_share_one_upstream_connection(start_gateway):
    """A finished stream hands its connection back: the next call reuses it."""
    port = free_port()
    gw = start_gateway(upstream_base_url=f"http://127.0.0.1:{port}")
    server = serve_upstream(gw, port)
    _, key = gw.user_with_key()
    streamed = ask(gw, key, stream=True)
    assert streamed.status_code == 200 and "event: message_stop" in streamed.text
    assert ask(gw, key).status_code == 200
    assert server.connections == 1
    stop_upstream(gw, server)


def start_proxy(gw, port: int) -> ForwardProxy:
    proxy = ForwardProxy()
    gw.run(proxy.start(port))
    return proxy


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_upstream_calls_go_through_the_configured_proxy(start_gateway, tls, scheme):
    """With HTTP_PROXY / HTTPS_PROXY set, the upstream call goes through that proxy: an
    absolute-URI request for http, a CONNECT tunnel (TLS still verified end to end) for https."""
    server_ctx, ca_path = tls
    port, proxy_port = free_port(), free_port()
    env = {f"{scheme.upper()}_PROXY": f"http://127.0.0.1:{proxy_port}", "SSL_CERT_FILE": ca_path}
    gw = start_gateway(env, upstream_base_url=f"{scheme}://127.0.0.1:{port}")
    server = serve_upstream(gw, port, server_ctx if scheme == "https" else None)
    proxy = start_proxy(gw, proxy_port)
    _, key = gw.user_with_key()
    r = ask(gw, key)
    assert r.status_code == 200, r.text
    expected = f"CONNECT 127.0.0.1:{port}" if scheme == "https" else f"POST http://127.0.0.1:{port}/v1/messages"
    assert proxy.seen == [expected]
    gw.run(proxy.stop())
    stop_upstream(gw, server)


def test_no_proxy_host_is_reached_directly(start_gateway):
    """A host listed in NO_PROXY is called directly even though HTTP_PROXY is set."""
    proxy_port = free_port()
    gw = start_gateway({"HTTP_PROXY": f"http://127.0.0.1:{proxy_port}", "NO_PROXY": "example.com,127.0.0.1"})
    proxy = start_proxy(gw, proxy_port)
    _, key = gw.user_with_key()
    assert ask(gw, key).status_code == 200
    assert proxy.seen == [] and len(gw.fake.requests) == 1
    gw.run(proxy.stop())


def test_upstream_calls_are_not_logged_one_by_one(gateway, caplog):
    """No log line per upstream call (httpx's would carry the URL and a client's query string)."""
    caplog.set_level(logging.INFO)
    _, key = gateway.user_with_key()
    assert ask(gateway, key).status_code == 200
    assert not any(gateway.fake.base_url in record.getMessage() for record in caplog.records)


class HangUpOnce:
    """A raw upstream that reads each request; it closes its first connection without an
    answer (as a kept-alive connection the upstream dropped while idle does), then answers."""

    ANSWER = (b'{"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514", '
              b'"content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": null, '
              b'"usage": {"input_tokens": 5, "output_tokens": 2}}')

    def __init__(self, hang_ups: int = 1) -> None:
        self.hang_ups, self.connections = hang_ups, 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            if self.connections <= self.hang_ups:
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                         % (len(self.ANSWER), self.ANSWER))
            await writer.drain()
        finally:
            writer.close()


@pytest.mark.parametrize("hang_ups, status", [(1, 200), (5, 502)])
def test_a_dropped_connection_is_retried_once(start_gateway, hang_ups, status):
    """An upstream that drops the connection before answering is asked once more on a new
    connection (aiohttp does not retry a POST itself); one that keeps dropping is a 502 after
    that one retry, with nothing debited."""
    port = free_port()
    gw = start_gateway(upstream_base_url=f"http://127.0.0.1:{port}")
    upstream = HangUpOnce(hang_ups)
    server = gw.run(asyncio.start_server(upstream.serve, "127.0.0.1", port))
    username, key = gw.user_with_key()
    r = ask(gw, key)
    assert r.status_code == status, r.text
    assert upstream.connections == 2
    if status == 502:
        assert gw.micro_balance(username) == (100_000_000, 0)
    server.close()
