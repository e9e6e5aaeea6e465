"""Composition root: settings → database → services → Tornado application."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import tornado.httpserver
import tornado.web

from handlers.api import admin, messages, models, openai_chat
from handlers.base import NotFoundApiHandler, NotFoundPageHandler, make_jinja_env
from handlers.pages import account, auth, dashboard, home, keys, topup
from services.accounts.keys import KeyService
from services.accounts.login_throttle import ThrottleService
from services.accounts.users import UserService
from services.billing.credits import BillingService
from services.billing.topup import TopupService
from services.billing.usage import UsageService
from services.config import ConfigError, Settings
from services.gateway.catalog import CatalogService
from services.gateway.heartbeat import StreamKeepAlive
from services.gateway.ratelimit import RateLimitService
from services.gateway.relay import RelayService
from services.gateway.upstream import UpstreamService, build_upstream_client
from services.store import db as dbmod

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("cheaplm")

# Each handlers module ends with `routes = [...]`; later modules plug in here.
ROUTE_MODULES = [messages, openai_chat, models, admin, auth, dashboard, keys, topup, account, home]


@dataclass
class Services:
    """Everything handlers reach through `self.services`."""

    settings: Settings
    db: object
    catalog: CatalogService
    users: UserService
    keys: KeyService
    usage: UsageService
    billing: BillingService
    upstream: UpstreamService
    ratelimit: RateLimitService
    topup: TopupService
    throttle: ThrottleService
    http_client: httpx.AsyncClient
    relay: RelayService = field(init=False)


async def build_services(settings: Settings, *, db=None,
                         http_client: httpx.AsyncClient | None = None) -> Services:
    """Connect, create indexes, seed catalog/upstream/admin and recover stale holds."""
    if db is None:
        _, db = dbmod.connect(settings)
    await dbmod.ensure_indexes(db)
    if http_client is None:
        http_client = build_upstream_client(settings)
    usage = UsageService(db)
    keys = KeyService(db, usage=usage, cache_seconds=settings.key_cache_seconds)
    billing = BillingService(db, usage, keys)
    services = Services(
        settings=settings, db=db, catalog=CatalogService(db, settings.catalog_refresh_seconds),
        users=UserService(db), keys=keys, usage=usage,
        billing=billing, topup=TopupService(db, billing), throttle=ThrottleService(
            db, settings.login_max_per_account, settings.login_max_per_ip, settings.signup_max_per_ip,
            settings.login_window_seconds, max_per_account_address=settings.login_max_per_account_address),
        upstream=UpstreamService(db, settings, http_client), http_client=http_client,
        ratelimit=RateLimitService(db, settings.rate_limit_rpm))
    services.relay = RelayService(billing, services.upstream, services.ratelimit)
    await services.catalog.seed()
    await services.upstream.seed()
    if settings.admin_username:
        await services.users.ensure_admin(settings.admin_username, settings.admin_password)
    stale = dt.timedelta(seconds=0 if settings.embedded else settings.hold_stale_seconds)
    await services.billing.release_stale_holds(older_than=dt.datetime.now(dt.timezone.utc) - stale)
    return services


def make_app(services: Services) -> tornado.web.Application:
    """The Tornado application for these services (tests call this too)."""
    settings = services.settings
    routes = [r for module in ROUTE_MODULES for r in module.routes]
    routes.append((r"/(?:api|v1|cursor|admin/api)(?:/.*)?", NotFoundApiHandler))
    cookie_secret = settings.cookie_secret or secrets.token_hex(32)
    jinja_env = make_jinja_env(ROOT / "templates")
    keepalive = StreamKeepAlive(settings.keepalive_interval)
    return tornado.web.Application(
        routes, services=services, jinja_env=jinja_env, keepalive=keepalive,
        cookie_secret=cookie_secret, xsrf_cookies=True, xsrf_cookie_kwargs={"httponly": True, "samesite": "Lax"},
        static_path=str(ROOT / "static"), default_handler_class=NotFoundPageHandler,
        compress_response=False, debug=settings.debug, login_url="/login")


async def start(settings: Settings, **kwargs) -> tuple[tornado.httpserver.HTTPServer, tornado.web.Application]:
    """Build everything and listen; returns (server, app)."""
    services = await build_services(settings, **kwargs)
    app = make_app(services)
    app.settings["keepalive"].start()
    # Held by the app: the event loop keeps only a weak reference to a task.
    app.settings["catalog_refresh"] = asyncio.ensure_future(_refresh_catalog(services))
    # Bodies up to twice the documented limit are read so the handler can answer a clear
    # 413; anything larger is cut off by Tornado itself. No xheaders: handlers/base.py
    # believes X-Forwarded-* only from TRUSTED_PROXIES.
    server = app.listen(settings.port, settings.host, max_body_size=2 * settings.max_body_bytes,
                        idle_connection_timeout=settings.header_timeout)
    return server, app


async def _refresh_catalog(services: Services) -> None:
    while True:
        await asyncio.sleep(services.catalog.refresh_seconds)
        try:
            await services.catalog.reload()
            await services.upstream.reload()
        except Exception:
            log.exception("catalog refresh failed")


async def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"cheaplm: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.embedded and not settings.cookie_secret:
        log.warning("COOKIE_SECRET unset: sessions will not survive a restart")
    server, app = await start(settings)
    log.info("CheapLM listening on http://%s:%d (upstream %s)", settings.host, settings.port,
             settings.upstream_base_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await app.settings["services"].ratelimit.sync()
    log.info("stopped")


if __name__ == "__main__":
    asyncio.run(main())
