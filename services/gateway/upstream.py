"""The upstream side: which Anthropic-compatible provider to call, and calling it.

Upstreams are data (`upstreams` collection, written only by UpstreamService: the seed here,
admin edits in upstream_edits.py). Each request goes to the pool's best upstream and fails
over to the next before its answer starts (services/gateway/pool.py). One shared `httpx.AsyncClient` (from
`build_upstream_client`, on aiohttp's connection pool and parser) serves all calls.
"""
from __future__ import annotations

import asyncio
import http.cookiejar
import logging
import urllib.parse
from dataclasses import dataclass, field

import aiohttp
import httpx
import orjson
from httpx_aiohttp import HttpxAiohttpClient

from services.config import Settings
from services.core.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamOverloaded, error_type_for
from services.gateway.pool import KeyBox, UpstreamPool
from services.gateway.upstream_edits import UpstreamEditsMixin, failover_open, upstream_from_doc
from services.store.db import DuplicateKeyError

log = logging.getLogger(__name__)

# Request headers a client may send that the upstream should see unchanged.
FORWARD_REQUEST_HEADERS = ("anthropic-version", "anthropic-beta", "anthropic-workspace-id")
# Upstream response headers passed back to the client (plus every anthropic-ratelimit-*).
PASS_BACK_HEADERS = ("request-id", "retry-after", "x-should-retry", "retry-after-ms")
DEFAULT_VERSION = "2023-06-01"
# Query parameters the upstream's Messages API defines; any others are not forwarded.
FORWARD_QUERY_PARAMS = ("beta",)


def check_forwarded_headers(client_headers) -> None:
    """Raise InvalidRequest naming the first forwarded header whose value is not printable
    ASCII (a non-ASCII byte, CR, LF, NUL or another control character): such a value cannot
    be sent upstream."""
    for name in FORWARD_REQUEST_HEADERS:
        value = client_headers.get(name)
        if value and not all(" " <= c <= "~" or c == "\t" for c in value):
            raise InvalidRequest(f"The {name} header must be printable ASCII.", param=name)


def forwarded_query(query: str) -> str:
    """The part of a client's query string the upstream API defines (FORWARD_QUERY_PARAMS),
    re-encoded; everything else (a key put in the URL, say) stays here."""
    pairs = urllib.parse.parse_qsl(query or "", keep_blank_values=True)
    return urllib.parse.urlencode([(k, v) for k, v in pairs if k in FORWARD_QUERY_PARAMS])

@dataclass(frozen=True)
class Upstream:
    id: str
    base_url: str
    api_key: str
    beta_allowlist: tuple[str, ...] | None = None  # None = forward anthropic-beta unchanged
    name: str = ""
    priority: int = 0           # lower first
    weight: int = 1             # share of traffic among equal priorities
    models: tuple[str, ...] = ()  # catalog model ids served; empty = all
    enabled: bool = True


def pass_back_headers(response: httpx.Response) -> dict[str, str]:
    """The upstream response headers a client should see (request id, rate limits, retry)."""
    out = {}
    for name, value in response.headers.items():
        if name in PASS_BACK_HEADERS or name.startswith("anthropic-ratelimit-"):
            out[name] = value
    return out


def build_upstream_client(settings: Settings) -> httpx.AsyncClient:
    """The one HTTP client for every upstream call. Build it inside the running loop; the
    composition root closes it (`await client.aclose()`).

    httpx's API over aiohttp's keep-alive pool and C parser (httpx-aiohttp). Timeouts
    default to a stream's: `read` is the idle limit between two reads. aiohttp has no write
    timeout (a request body is small and sent at once) and keeps every idle connection until
    `keepalive_expiry`, so neither is a setting.
    """
    # httpx logs every request at INFO, URL and query string included; the access log
    # already has a line per call, and a query string can carry a client's key.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    limits = httpx.Limits(max_connections=settings.upstream_max_connections,
                          keepalive_expiry=settings.upstream_keepalive_expiry)
    # trust_env: httpx reads HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY (and
    # SSL_CERT_FILE / SSL_CERT_DIR) here, once, and mounts one proxied aiohttp transport per
    # proxy. These are the environment's conventions rather than gateway settings: the
    # library's reading (lower- and upper-case names, NO_PROXY's domain/IP forms) is the
    # one every other tool on the host follows, which a copy in Settings would not be.
    return HttpxAiohttpClient(
        limits=limits, timeout=_stream_timeout(settings), trust_env=True, follow_redirects=False,
        # The gateway keeps no session with the upstream: cookies it sets are not stored.
        cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])))


def _stream_timeout(s: Settings) -> httpx.Timeout:
    return httpx.Timeout(connect=s.upstream_connect_timeout, read=s.upstream_idle_timeout,
                         write=None, pool=s.upstream_connect_timeout)


def _failure(upstream: Upstream, exc: Exception, *, mid_response: bool = False) -> UpstreamError:
    """The UpstreamError for a transport failure.

    Classified by the aiohttp error itself when there is one: httpx-aiohttp 0.2.0 maps every
    aiohttp.ClientConnectionError (a refused connection, a bad certificate, a server that hung
    up) to httpx.ConnectTimeout, and leaves some (a malformed response) unmapped.
    """
    cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    if isinstance(cause, (TimeoutError, httpx.TimeoutException)):
        if mid_response:
            return UpstreamError("The upstream stopped responding.")
        return UpstreamError("The upstream did not answer in time.")
    if isinstance(cause, (aiohttp.ClientConnectorError, httpx.ConnectError)):
        log.warning("upstream %s unreachable: %s", upstream.id, cause)
        return UpstreamError(f"The upstream failed: could not connect ({type(cause).__name__}).")
    # str, not repr: an aiohttp error's repr carries the request headers, x-api-key included.
    log.warning("upstream %s failed: %s: %s", upstream.id, type(cause).__name__, cause)
    where = " mid-response" if mid_response else ""
    return UpstreamError(f"The upstream failed{where} ({type(cause).__name__}).")


@dataclass
class UpstreamService(UpstreamEditsMixin):
    """Chooses the upstream and performs calls; maps transport failures to UpstreamError.

    `client` is the shared client from `build_upstream_client`; its owner closes it."""

    db: object
    settings: Settings
    client: httpx.AsyncClient
    _current: Upstream | None = field(default=None)

    def __post_init__(self) -> None:
        # A stream's `read` is the idle limit between two reads: long generations are fine,
        # a silent upstream is not. A non-streamed answer comes in one piece once it is
        # generated, so its wait is bounded by the total limit (and `read()` bounds the body).
        timeout = _stream_timeout(self.settings)
        self._timeouts = timeout.as_dict()
        self._whole_timeouts = {**self._timeouts, "read": self.settings.upstream_timeout}
        s = self.settings
        self.keybox = KeyBox(s.upstream_key_secret or s.cookie_secret)
        self.pool = UpstreamPool(s.upstream_breaker_failures, s.upstream_breaker_window, s.upstream_breaker_cooldown)

    async def seed(self) -> None:
        """Keep the `default` upstream record in step with UPSTREAM_BASE_URL / UPSTREAM_API_KEY."""
        for attempt in range(2):  # two processes upserting at once: the loser updates the winner's
            try:
                await self.db.upstreams.update_one(
                    {"_id": "default"},
                    {"$set": {"base_url": self.settings.upstream_base_url.rstrip("/"),
                              "api_key_enc": self.keybox.encrypt(self.settings.upstream_api_key)},
                     "$unset": {"api_key": ""},
                     "$setOnInsert": {"name": "default", "priority": 0, "weight": 1, "enabled": True,
                                      "beta_allowlist": None, "models": []}},
                    upsert=True)
                break
            except DuplicateKeyError:
                if attempt:
                    raise
        await self.reload()

    async def reload(self) -> None:
        docs = await self.db.upstreams.find({}).sort([("priority", 1), ("_id", 1)]).to_list(None)
        self.pool.replace([upstream_from_doc(Upstream, d, self.keybox) for d in docs])
        enabled = self.pool.serving(None)
        # every upstream disabled: calls fail with "No upstream is configured."
        self._current = enabled[0] if enabled else None

    def pick(self) -> Upstream:
        if self._current is None:
            raise UpstreamError("No upstream is configured.")
        return self._current

    def build_headers(self, upstream: Upstream, client_headers) -> dict[str, str]:
        check_forwarded_headers(client_headers)
        headers = {"content-type": "application/json", "accept-encoding": "identity",
                   "x-api-key": upstream.api_key}
        for name in FORWARD_REQUEST_HEADERS:
            value = client_headers.get(name)
            if value:
                headers[name] = value
        headers.setdefault("anthropic-version", DEFAULT_VERSION)
        beta = headers.get("anthropic-beta")
        if beta and upstream.beta_allowlist is not None:
            kept = [b for b in (x.strip() for x in beta.split(",")) if b in upstream.beta_allowlist]
            if kept:
                headers["anthropic-beta"] = ",".join(kept)
            else:
                del headers["anthropic-beta"]
        return headers

    async def open(self, path: str, body: bytes, client_headers, *, query: str = "",
                   stream: bool = False, model: str | None = None) -> httpx.Response:
        """POST to the pool's best upstream for `model`, failing over to the next on a
        connection error, 429 or 5xx (pool.py); return the response with headers read, body
        unread, naming the upstream that answered (`served_by`).

        The caller must `aclose()` it. Raises UpstreamError if no upstream can be reached
        or answers in time; an error status is returned, not raised (see `error_for`).
        """
        return await failover_open(self, path, body, client_headers, query=query, stream=stream, model=model)

    async def open_one(self, upstream: Upstream, path: str, body: bytes, client_headers, *, query: str = "",
                       stream: bool = False) -> httpx.Response:
        """POST to one upstream (no failover); as `open` otherwise."""
        query = forwarded_query(query)
        url = upstream.base_url + path + (f"?{query}" if query else "")
        request = httpx.Request("POST", url, content=body, headers=self.build_headers(upstream, client_headers),
                                extensions={"timeout": self._timeouts if stream else self._whole_timeouts})
        for attempt in range(2):
            try:
                return await self.client.send(request, stream=True)
            except (httpx.HTTPError, aiohttp.ClientError) as exc:
                # A kept-alive connection the upstream closed while it sat idle fails before any
                # answer; aiohttp does not retry a POST on it, so try once more on a new one.
                if attempt == 0 and isinstance(exc.__cause__ or exc, aiohttp.ServerDisconnectedError):
                    continue
                raise _failure(upstream, exc) from None
        raise AssertionError("unreachable")

    async def read(self, response: httpx.Response) -> bytes:
        """Read a whole response body; raises UpstreamError on a broken or silent upstream."""
        try:
            return await asyncio.wait_for(response.aread(), self.settings.upstream_timeout)
        except asyncio.TimeoutError:
            raise UpstreamError("The upstream stopped responding.") from None
        except (httpx.HTTPError, aiohttp.ClientError) as exc:
            raise _failure(self.pick(), exc, mid_response=True) from None
        finally:
            await response.aclose()

    async def error_for(self, response: httpx.Response) -> GatewayError:
        """Turn a non-200 upstream answer into the error the client should get.

        4xx pass through with the upstream's message (401/403 mean the *gateway's* upstream
        credentials failed, so they become 502); 529 stays overloaded_error; other 5xx → 502.
        """
        status = response.status_code
        try:
            raw = await self.read(response)
        except UpstreamError:
            raw = b""
        message, etype = "", None
        try:
            err = orjson.loads(raw).get("error") or {}
            message, etype = str(err.get("message", "")), err.get("type")
        except (orjson.JSONDecodeError, AttributeError):
            message = raw[:200].decode("utf-8", "replace")
        headers = pass_back_headers(response)
        if status == 529:
            return UpstreamOverloaded(message or "The upstream is overloaded. Retry shortly.", headers=headers)
        if status in (401, 403):
            log.error("upstream rejected the gateway's credentials (HTTP %d)", status)
            return UpstreamError(f"The upstream failed: it rejected the gateway's credentials (HTTP {status}).",
                                 headers=headers)
        if 400 <= status < 500:
            return GatewayError(message or f"Upstream rejected the request (HTTP {status}).", status=status,
                                error_type=etype or error_type_for(status),
                                headers=headers)
        return UpstreamError(f"The upstream failed (HTTP {status}){': ' + message if message else ''}.",
                             headers=headers)

    async def call(self, path: str, body: bytes, client_headers, *, query: str = "") -> tuple[dict, bytes]:
        """A small non-streamed call (count_tokens): returns (headers to pass back, body).

        Raises the mapped GatewayError for any non-200 answer or transport failure.
        """
        response = await self.open(path, body, client_headers, query=query)
        if response.status_code != 200:
            raise await self.error_for(response)
        return pass_back_headers(response), await self.read(response)
