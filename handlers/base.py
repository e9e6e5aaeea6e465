"""Base handlers: `ApiHandler` (API keys, JSON errors) and `PageHandler` (cookies, XSRF, pages).

This module is the one place where domain errors become HTTP responses.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import re
import secrets
from urllib.parse import urlparse

import jinja2
import orjson
import tornado.httputil
import tornado.netutil
import tornado.web
from markupsafe import Markup
from pymongo.errors import ConnectionFailure

from services.accounts.keys import display_prefix
from services.core.clock import as_utc
from services.core.errors import GatewayError, InvalidRequest, NotFound, RequestTooLarge, error_type_for
from services.core.money import fmt_credits
from services.core.types import Principal

log = logging.getLogger("cheaplm")
# Tornado's own access logger name, so log configuration made for Tornado applies.
access_log = logging.getLogger("tornado.access")

DATABASE_RETRY_SECONDS = 5  # retry-after of a 503 while the database is unreachable


def database_unavailable() -> GatewayError:
    """What a request gets while the database is unreachable: it is refused (never served
    unbilled) with 503 overloaded_error, which the SDKs retry after retry-after."""
    return GatewayError("The gateway's database is unreachable; the request was not run and nothing was "
                        "charged. Retry in a few seconds.", status=503, error_type="overloaded_error",
                        headers={"retry-after": str(DATABASE_RETRY_SECONDS)})


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The Application's `log_function`: one JSON line per request on `tornado.access`, and
    the per-request metrics. Never a key, password, upstream key, cookie or prompt: the URI
    is redacted, and only ids, counts and times are written."""
    request, status = handler.request, handler.get_status()
    latency_ms = round(request.request_time() * 1000, 2)
    receipt = getattr(handler, "receipt", None)
    principal = getattr(handler, "principal", None)
    model = getattr(handler, "call_model", "") or ""
    route = type(handler).__name__
    services = handler.application.settings.get("services")
    metrics = getattr(services, "metrics", None)
    if metrics is not None:
        metrics.request(route, status, model)
    if status < 500 and not access_log.isEnabledFor(logging.INFO):
        return
    line = {"request_id": getattr(handler, "request_id", None), "method": request.method,
            "path": redact_uri(request.uri or ""), "route": route, "status": status,
            "latency_ms": latency_ms, "client": request.remote_ip,
            "user_id": str(principal.user_id) if principal is not None else None,
            "key_prefix": getattr(handler, "key_prefix", None), "model": model or None}
    if receipt is not None and receipt.record is not None:
        record = receipt.record
        line.update(upstream=receipt.upstream or None, tokens=record.usage.total,
                    input_tokens=record.usage.input_tokens, output_tokens=record.usage.output_tokens,
                    credits=receipt.cost, ttft_ms=record.ttft_ms, usage_status=record.status)
    access_log.log(logging.WARNING if status >= 500 else logging.INFO, "%s", orjson.dumps(line, default=str).decode())


def _trusted(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def client_address(peer: str, headers: tornado.httputil.HTTPHeaders, networks: tuple) -> str:
    """The client's address: the peer's own, unless the peer is a trusted proxy; then the
    nearest X-Forwarded-For hop that is not itself a trusted proxy. Anyone can write
    X-Forwarded-For, so only hops added by our own proxies are believed."""
    if not _trusted(peer, networks):
        return peer
    hops = [h.strip() for h in headers.get("X-Forwarded-For", headers.get("X-Real-Ip", "")).split(",")]
    client = peer
    for hop in reversed([h for h in hops if h]):
        if not tornado.netutil.is_valid_ip(hop):
            break
        client = hop
        if not _trusted(hop, networks):
            break
    return client


def client_protocol(peer: str, protocol: str, headers: tornado.httputil.HTTPHeaders, networks: tuple) -> str:
    """The scheme the client used: X-Forwarded-Proto (or X-Scheme) from a trusted proxy, else our own."""
    if not _trusted(peer, networks):
        return protocol
    claimed = headers.get("X-Forwarded-Proto", headers.get("X-Scheme", "")).split(",")[-1].strip().lower()
    return claimed if claimed in ("http", "https") else protocol


# Query parameters that carry credentials (?key=, ?api_key=, ?access_token=…), and anything
# shaped like one of our keys, are blanked before a URI is logged.
_SECRET_PARAM = re.compile(r"(?i)([?&][^=&#]*(?:key|token|secret|auth|pass|sig)[^=&#]*=)[^&#]*")
_SECRET_VALUE = re.compile(r"sk-[A-Za-z0-9_-]{8,}")


def redact_uri(uri: str) -> str:
    """The URI with credentials in its query string (and anything key-shaped) replaced."""
    return _SECRET_VALUE.sub("sk-[redacted]", _SECRET_PARAM.sub(r"\1[redacted]", uri))


class BaseHandler(tornado.web.RequestHandler):
    """Shared plumbing: services, request id, client address, logging that never prints secrets."""

    def __init__(self, application, request, **kwargs) -> None:
        # Before anything reads them (throttles, cookies' Secure flag, the access log):
        # believe X-Forwarded-* only from TRUSTED_PROXIES.
        networks = application.settings["services"].settings.trusted_networks
        peer = request.remote_ip
        request.remote_ip = client_address(peer, request.headers, networks)
        request.protocol = client_protocol(peer, request.protocol, request.headers, networks)
        super().__init__(application, request, **kwargs)

    def _request_summary(self) -> str:
        # Tornado's access log line: the URI without credentials a client put in the query.
        return f"{self.request.method} {redact_uri(self.request.uri or '')} ({self.request.remote_ip})"

    @property
    def services(self):
        return self.application.settings["services"]

    @property
    def request_id(self) -> str:
        rid = getattr(self, "_request_id", None)
        if rid is None:
            rid = self._request_id = "req_" + secrets.token_hex(12)
        return rid

    def log_exception(self, typ, value, tb) -> None:
        # Tornado's default prints repr(self.request), headers included: that would log API
        # keys and cookies. Domain errors are expected outcomes, not worth a traceback.
        if isinstance(value, (GatewayError, tornado.web.HTTPError)):
            return
        if isinstance(value, ConnectionFailure):
            log.warning("database unreachable in %s %s (%s): %s", self.request.method, self.request.path,
                        self.request_id, type(value).__name__)
            return
        log.error("unexpected error in %s %s (%s)", self.request.method, self.request.path,
                  self.request_id, exc_info=(typ, value, tb))

    def gateway_error(self, exc_info) -> GatewayError:
        """The GatewayError to render for an exception Tornado caught."""
        exc = exc_info[1] if exc_info else None
        if isinstance(exc, GatewayError):
            return exc
        if isinstance(exc, ConnectionFailure):
            metrics = getattr(self.services, "metrics", None)
            if metrics is not None:
                metrics.database_errors.inc()
            return database_unavailable()
        if isinstance(exc, tornado.web.HTTPError) and exc.status_code < 500:
            return GatewayError(exc.log_message or self._reason, status=exc.status_code,
                                error_type=error_type_for(exc.status_code))
        return GatewayError(f"Internal server error (request id {self.request_id}).", status=500,
                            error_type="api_error")


class BodyBudget:
    """The bytes that request bodies in flight may take in this process, together
    (MAX_BODIES_MB): a body is reserved at its headers and released when its request ends."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def reserve(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used -= size


BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# The HTTP server's own body limit, for every handler that does not stream its body (pages:
# a form above PageHandler.MAX_FORM_BYTES gets a clear 413 up to this size; beyond it the
# connection is closed). API handlers raise it per request (ApiHandler.prepare).
PAGE_BODY_MAX = 1024 * 1024


@tornado.web.stream_request_body
class ApiHandler(BaseHandler):
    """JSON API: authenticated by API key only, errors in the documented shape, CORS open.

    The body is streamed in only after `check_caller` accepted the headers' credentials and
    the declared size fits MAX_BODY_MB and the process's MAX_BODIES_MB budget, so a client
    without a key cannot make the gateway buffer anything. Handlers read it with `body()`.
    """

    error_flavor = "anthropic"  # "openai" adds error.code and error.param

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.set_header("Access-Control-Expose-Headers",
                        "request-id, retry-after, x-cheaplm-credits-used, x-cheaplm-credits-remaining, "
                        "x-cheaplm-dropped-params")

    def check_xsrf_cookie(self) -> None:
        """API routes authenticate with keys, never cookies, so XSRF does not apply."""

    async def check_caller(self) -> None:
        """Refuse a caller from its headers alone (before any body is read): by default the
        API key must authenticate. Routes open to anyone or with other credentials override."""
        await self.authenticate()

    async def prepare(self) -> None:
        self._chunks: list[bytes] = []
        self._body: bytes | None = None
        self._reserved = 0
        if self.request.method == "OPTIONS":
            return
        s = self.services.settings
        limit = s.max_body_bytes
        has_body = self.request.method in BODY_METHODS or "Transfer-Encoding" in self.request.headers \
            or self.request.headers.get("Content-Length", "0") != "0"
        length = self.request.headers.get("Content-Length")
        # Read before Tornado parses the header itself (that comes with the body).
        if length is not None and not re.fullmatch(r"[0-9]{1,18}", length):
            raise InvalidRequest("The Content-Length header must be a number of bytes.", param="content-length")
        if length is not None and int(length) > limit:
            raise RequestTooLarge(f"The request body is {int(length)} bytes; the limit is "
                                  f"{limit} bytes ({s.max_body_mb:g} MB).")
        await self.check_caller()
        if not has_body:
            self.request.connection.set_max_body_size(0)
            return
        # A chunked body of unknown size reserves the most it may grow to.
        size = int(length) if length is not None else limit
        budget = self.application.settings.setdefault("body_budget", BodyBudget(s.max_bodies_bytes))
        if not budget.reserve(size):
            raise GatewayError("The gateway is receiving too many request bodies at once; retry shortly.",
                               status=503, error_type="overloaded_error", headers={"retry-after": "1"})
        self._reserved = size
        self.request.connection.set_max_body_size(limit)

    def data_received(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    def body(self) -> bytes:
        """The request body (complete once the handler's method runs)."""
        if self._body is None:
            self._body = b"".join(self._chunks)
            self._chunks = []
        return self._body

    def _release_body(self) -> None:
        if getattr(self, "_reserved", 0):
            self.application.settings["body_budget"].release(self._reserved)
            self._reserved = 0
        self._chunks, self._body = [], b""

    def on_finish(self) -> None:
        self._release_body()

    def on_connection_close(self) -> None:
        super().on_connection_close()  # fails a body still being read
        self._release_body()

    def options(self, *args) -> None:
        """CORS preflight."""
        self.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.set_header("Access-Control-Allow-Headers",
                        self.request.headers.get("Access-Control-Request-Headers", "*"))
        self.set_header("Access-Control-Max-Age", "86400")
        self.set_status(204)
        self.finish()

    def bearer_token(self) -> str | None:
        auth = self.request.headers.get("Authorization", "")
        return (auth[7:].strip() or None) if auth[:7].lower() == "bearer " else None

    def api_key(self) -> str | None:
        key = self.request.headers.get("x-api-key")
        return key.strip() if key else self.bearer_token()

    async def authenticate(self) -> Principal:
        """The caller's Principal; raises AuthenticationFailed / PermissionDenied."""
        principal = getattr(self, "_principal", None)
        if principal is None:
            key = self.api_key()
            principal = self._principal = self.principal = await self.services.keys.authenticate(key)
            self.key_prefix = display_prefix(key)
        return principal

    def json_body(self) -> dict:
        """The request body as a JSON object; raises InvalidRequest."""
        try:
            body = orjson.loads(self.body() or b"{}")
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        return body

    def write_json(self, obj, status: int = 200) -> None:
        """Finish with `obj` as JSON (ObjectIds as strings, datetimes as RFC 3339)."""
        self.set_status(status)
        self.finish(orjson.dumps(obj, default=str))

    def error_body(self, err: GatewayError) -> dict:
        error = {"type": err.error_type, "message": err.message}
        if self.error_flavor == "openai":
            error.update(code=err.code, param=err.param)
        return {"type": "error", "error": error}

    def write_error(self, status_code: int, **kwargs) -> None:
        err = self.gateway_error(kwargs.get("exc_info"))
        self.set_status(err.status)
        self.set_header("Content-Type", "application/json")
        self.set_header("request-id", self.request_id)
        for name, value in err.headers.items():
            self.set_header(name, value)
        self.finish(orjson.dumps(self.error_body(err)))


class NotFoundApiHandler(ApiHandler):
    """Unknown API path: documented JSON 404."""

    async def prepare(self) -> None:
        raise NotFound(f"Unknown endpoint: {self.request.method} {self.request.path}")


def safe_next(target: str | None, default: str = "/dashboard") -> str:
    """A post-login redirect target restricted to local paths (no //host or scheme)."""
    # Browsers drop tabs/newlines and treat "\\" as "/" in URLs, so "/\t/evil.com" and
    # "/\\evil.com" would leave the site: reject any control character or backslash.
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target)):
        return default
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc:
        return default
    return target


def make_jinja_env(template_dir) -> jinja2.Environment:
    """The pages' templates (autoescaped), with the display filters: exact credits,
    thousands separators, UTC times."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir),
                             autoescape=jinja2.select_autoescape(default=True))
    env.filters.update(credits=fmt_credits, signed_credits=fmt_signed_credits, num=fmt_int,
                       when=fmt_when, day=fmt_day)
    return env


def fmt_signed_credits(micro: int) -> str:
    return ("+" if micro > 0 else "−" if micro < 0 else "") + fmt_credits(abs(micro))


def fmt_int(value) -> str:
    return f"{int(value or 0):,}"


def fmt_when(value) -> str:
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, dt.datetime) else "—"


def fmt_day(value) -> str:
    return as_utc(value).strftime("%Y-%m-%d") if isinstance(value, dt.datetime) else "—"


class PageHandler(BaseHandler):
    """Server-rendered pages: signed session cookie, XSRF on every form, Jinja templates.

    The session cookie holds a random session token; the session itself lives in the
    database (UserService), so logging out, "log out everywhere" and a password change end
    sessions for good, whatever copies of the cookie exist.
    """

    SESSION_COOKIE = "cheaplm_session"
    FLASH_COOKIE = "cheaplm_flash"
    SESSION_DAYS = 14
    MAX_FORM_BYTES = 64 * 1024

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Content-Security-Policy",
                        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

    def set_cookie(self, name: str, value, **kwargs) -> None:
        """Every site cookie is HttpOnly and SameSite=Lax, and Secure when served over https."""
        kwargs.setdefault("httponly", True)
        kwargs.setdefault("samesite", "Lax")
        if self.request.protocol == "https":
            kwargs.setdefault("secure", True)
        super().set_cookie(name, value, **kwargs)

    async def prepare(self) -> None:
        self._user = self._session = None
        if len(self.request.body) > self.MAX_FORM_BYTES:
            raise RequestTooLarge("That form is too large.")
        raw = self.get_signed_cookie(self.SESSION_COOKIE, max_age_days=self.SESSION_DAYS)
        if not raw:
            return
        token = raw.decode(errors="replace")
        user = await self.services.users.session_user(token)
        if user is not None and not user.get("frozen"):
            self._user, self._session = user, token

    @property
    def session_token(self) -> str | None:
        """The signed-in browser's session token (None when signed out)."""
        return getattr(self, "_session", None)

    def get_current_user(self):
        return getattr(self, "_user", None)

    def page_argument(self, name: str = "page") -> int:
        """A 1-based page number from the query string (1 when absent or not a number)."""
        try:
            return min(max(int(self.get_argument(name, "1")), 1), 100_000)
        except ValueError:
            return 1

    async def login(self, user: dict) -> None:
        """Start a new session for `user` and give this browser its cookie."""
        token = await self.services.users.start_session(user["_id"], days=self.SESSION_DAYS)
        self._session = token
        self.set_signed_cookie(self.SESSION_COOKIE, token, expires_days=self.SESSION_DAYS)

    async def logout(self, *, everywhere: bool = False) -> None:
        """End this browser's session (with `everywhere`, every session of the user) and
        drop the cookie."""
        if everywhere and self.current_user is not None:
            await self.services.users.end_sessions(self.current_user["_id"])
        elif self.session_token:
            await self.services.users.end_session(self.session_token)
        self._session = None
        self.clear_cookie(self.SESSION_COOKIE)

    def flash(self, message: str) -> None:
        """Show `message` once, on the next page this browser renders (signed cookie)."""
        self.set_signed_cookie(self.FLASH_COOKIE, message, expires_days=None)

    def base_url(self) -> str:
        configured = self.services.settings.public_base_url
        return configured.rstrip("/") if configured else f"{self.request.protocol}://{self.request.host}"

    def _take_flash(self) -> str | None:
        if not self.get_cookie(self.FLASH_COOKIE):
            return None
        self.clear_cookie(self.FLASH_COOKIE)
        raw = self.get_signed_cookie(self.FLASH_COOKIE, max_age_days=1)
        return raw.decode(errors="replace") if raw else None

    def render_page(self, template: str, status: int = 200, **context) -> None:
        env = self.application.settings["jinja_env"]
        ctx = {"current_user": self.current_user, "request": self.request, "base_url": self.base_url(),
               "xsrf_form_html": Markup(self.xsrf_form_html()), "static_url": self.static_url,
               "flash": self._take_flash()}
        ctx.update(context)
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        if self.current_user is not None:
            self.set_header("Cache-Control", "no-store")
        self.finish(env.get_template(template).render(**ctx))

    def write_error(self, status_code: int, **kwargs) -> None:
        err = self.gateway_error(kwargs.get("exc_info"))
        exc = (kwargs.get("exc_info") or (None, None))[1]
        if status_code == 403 and isinstance(exc, tornado.web.HTTPError) and "xsrf" in str(exc).lower():
            message = "Your form expired or was sent from another site. Reload the page and try again."
        elif status_code == 403 and isinstance(exc, tornado.web.HTTPError) and self.current_user is None:
            # @tornado.web.authenticated refuses a signed-out POST (it redirects only GETs).
            message = "You are signed out: log in again, then resend the form."
        elif isinstance(exc, ConnectionFailure):
            message = "CheapLM is down for maintenance for a moment. Please try again in a few seconds."
        else:
            message = err.message
        for name, value in err.headers.items():
            self.set_header(name, value)
        try:
            self.render_page("error.html", status=err.status, status_code=err.status, message=message,
                             title=_ERROR_TITLES.get(err.status, "Something went wrong"))
        except Exception:  # the error page itself failed: plain text, never a traceback
            log.exception("error page failed (%s)", self.request_id)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"{err.status}: {message}")


_ERROR_TITLES = {400: "That did not work", 403: "Not allowed", 404: "Page not found",
                 405: "Not allowed", 413: "Too large", 429: "Slow down", 503: "Down for maintenance"}


class NotFoundPageHandler(PageHandler):
    """Unknown page: the site's 404 page."""

    async def prepare(self) -> None:
        await super().prepare()
        raise NotFound("This page does not exist.")
