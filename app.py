"""Composition root: settings → database → services → Tornado application."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import tornado.httpserver
import tornado.netutil
import tornado.web
from pymongo.errors import ConnectionFailure, PyMongoError

from handlers.api import (
    admin,
    admin_models,
    admin_openapi,
    admin_ops,
    admin_upstreams,
    health,
    messages,
    metrics,
    models,
    openai_chat,
    openai_responses,
)
from handlers.base import PAGE_BODY_MAX, NotFoundApiHandler, NotFoundPageHandler, log_request, make_jinja_env
from handlers.pages import account, auth, dashboard, home, keys, reset, topup
from handlers.pages import admin as admin_pages
from services.accounts.keys import KeyService
from services.accounts.login_throttle import ThrottleService
from services.accounts.signin import SignInService
from services.accounts.users import UserService
from services.admin.audit import AuditService
from services.admin.site import SiteSettingsService
from services.admin.tokens import AdminTokenService
from services.admin.users import AdminUserActions
from services.billing.credits import BillingService
from services.billing.topup import TopupService
from services.billing.usage import UsageService
from services.config import ConfigError, Settings
from services.gateway.catalog import CatalogService
from services.gateway.count_tokens import CountTokensService
from services.gateway.health import HealthService
from services.gateway.heartbeat import StreamKeepAlive
from services.gateway.instances import InstanceService
from services.gateway.metrics import Metrics
from services.gateway.ratelimit import RateLimitService
from services.gateway.relay import RelayService
from services.gateway.settlements import PendingSettlements
from services.gateway.upstream import UpstreamService, build_upstream_client
from services.store import db as dbmod

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("cheaplm")

# Each handlers module ends with `routes = [...]`; later modules plug in here.
ROUTE_MODULES = [health, metrics, messages, openai_chat, openai_responses, models, admin_openapi, admin_models,
                 admin_upstreams, admin_ops, admin, auth, dashboard, keys, topup, account, home, admin_pages,
                 reset]


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
    health: HealthService
    topup: TopupService
    throttle: ThrottleService
    http_client: httpx.AsyncClient
    signin: SignInService = field(init=False)
    relay: RelayService = field(init=False)
    instances: InstanceService = field(init=False)
    metrics: Metrics = field(init=False)
    pending: PendingSettlements = field(init=False)
    count_tokens: CountTokensService = field(init=False)
    audit: AuditService = field(init=False)
    admin_tokens: AdminTokenService = field(init=False)
    site: SiteSettingsService = field(init=False)
    admin_users: AdminUserActions = field(init=False)


async def build_services(settings: Settings, *, db,
                         http_client: httpx.AsyncClient | None = None) -> Services:
    """Create indexes, seed catalog/upstream/admin and recover stale holds on `db`."""
    await dbmod.ensure_indexes(db)
    if not settings.embedded:  # mongomock scans a collection for expired documents on every operation
        await dbmod.ensure_usage_retention(db, settings.usage_retention_days)
    if http_client is None:
        http_client = build_upstream_client(settings)
    usage = UsageService(db)
    users = UserService(db)
    keys = KeyService(db, usage=usage, cache_seconds=settings.key_cache_seconds)
    instances = InstanceService(db, settings.instance_lease_seconds)
    billing = BillingService(db, usage, keys, instance_id=instances.instance_id)
    upstream = UpstreamService(db, settings, http_client)
    throttle = ThrottleService(db, settings.login_max_per_account, settings.login_max_per_ip,
                               settings.signup_max_per_ip, settings.login_window_seconds,
                               max_per_account_address=settings.login_max_per_account_address)
    services = Services(
        settings=settings, db=db, catalog=CatalogService(db, settings.catalog_refresh_seconds),
        users=users, keys=keys, usage=usage, billing=billing, topup=TopupService(db, billing),
        throttle=throttle, upstream=upstream, http_client=http_client,

        ratelimit=RateLimitService(db, settings.rate_limit_rpm), health=HealthService(db, upstream))
    services.instances, services.metrics = instances, Metrics()
    services.pending = PendingSettlements(billing)
    services.relay = RelayService(billing, services.upstream, services.ratelimit, services.metrics, services.pending)
    services.metrics.watch("open_streams", lambda: services.relay.open_streams)
    services.metrics.watch("holds_outstanding", lambda: services.relay.in_flight)
    services.metrics.watch("pending_settlements", lambda: len(services.pending))
    services.count_tokens = CountTokensService(upstream, settings.count_tokens_cache_seconds)
    services.audit, services.admin_tokens = AuditService(db), AdminTokenService(db)
    services.admin_users = AdminUserActions(users, billing, keys, services.audit)
    services.site = SiteSettingsService(db, settings.signup_credits)
    services.signin = SignInService(users, throttle, billing, services.site)
    await services.catalog.seed()
    await services.upstream.seed()
    if settings.admin_username:
        await services.users.ensure_admin(settings.admin_username, settings.admin_password)
    stale = dt.timedelta(seconds=0 if settings.embedded else settings.hold_stale_seconds)
    await services.billing.repair_ledger()  # credit movements whose ledger write was lost
    await instances.register()  # before any hold of this process, so none looks dead
    # Holds of processes whose lease ran out (they died mid-request), never of live ones.
    await services.billing.release_stale_holds(older_than=dt.datetime.now(dt.timezone.utc) - stale,
                                               alive=None if settings.embedded else await instances.alive())
    return services


def make_app(services: Services, keepalive: StreamKeepAlive) -> tornado.web.Application:
    """The Tornado application for these services."""
    settings = services.settings
    routes = [r for module in ROUTE_MODULES for r in module.routes]
    routes.append((r"/(?:api|v1|cursor|admin/api)(?:/.*)?", NotFoundApiHandler))
    cookie_secret = settings.cookie_secret or secrets.token_hex(32)
    jinja_env = make_jinja_env(ROOT / "templates")
    return tornado.web.Application(
        routes, services=services, jinja_env=jinja_env, keepalive=keepalive,
        cookie_secret=cookie_secret, xsrf_cookies=True, xsrf_cookie_kwargs={"httponly": True, "samesite": "Lax"},
        static_path=str(ROOT / "static"), default_handler_class=NotFoundPageHandler,
        compress_response=False, debug=settings.debug, login_url="/login", log_function=log_request)


class Gateway:
    """Owns everything long-lived — the database client, the upstream HTTP client, the
    services, the stream keep-alive ticker, the catalog refresh and the listening server —
    and starts and stops them in one place. `python app.py` and the tests both use it."""

    def __init__(self, settings: Settings, *, sockets: list | None = None, **build_options) -> None:
        self.settings = settings
        self._sockets = sockets  # pre-bound and shared by every process of `--processes N`
        self._build_options = build_options
        self.services: Services | None = None
        self.app: tornado.web.Application | None = None
        self.server: tornado.httpserver.HTTPServer | None = None
        self._db_client = None
        self._keepalive = StreamKeepAlive(settings.keepalive_interval)
        self._refresh: asyncio.Task | None = None

    async def start(self) -> None:
        """Connect, build the services, start the background work and listen."""
        s = self.settings
        self._db_client, db = dbmod.connect(s)
        self.services = await build_services(s, db=db, **self._build_options)
        self.app = make_app(self.services, self._keepalive)
        self._keepalive.start()
        self._refresh = asyncio.ensure_future(self._refresh_catalog())
        if not s.embedded:
            self.services.instances.start(self.services.billing, s.hold_stale_seconds)
        # API handlers stream their bodies and raise this limit to MAX_BODY_MB once the caller
        # and the declared size check out (handlers/base.py); pages take small forms only.
        # No xheaders: handlers/base.py believes X-Forwarded-* only from TRUSTED_PROXIES.
        self.server = tornado.httpserver.HTTPServer(
            self.app, max_body_size=PAGE_BODY_MAX, idle_connection_timeout=s.header_timeout,
            body_timeout=s.body_timeout)
        self.server.add_sockets(self._sockets or tornado.netutil.bind_sockets(s.port, s.host))

    async def stop(self) -> None:
        """Stop listening; let calls in flight finish for up to SHUTDOWN_GRACE_SECONDS, then
        end the streams still open with an in-band error (each settled for what it delivered);
        stop the background work, write pending settlements and counts, give up the lease,
        close the clients."""
        if self.server is not None:
            self.server.stop()
        if self.services is not None:
            await self.services.relay.drain(self.settings.shutdown_grace_seconds)
        if self._refresh is not None:
            self._refresh.cancel()
        self._keepalive.stop()
        if self.services is not None:
            await self.services.pending.stop()
            with contextlib.suppress(PyMongoError):
                await self.services.ratelimit.sync()
            if not self.settings.embedded and not len(self.services.pending):
                await self.services.instances.stop()
            await self.services.http_client.aclose()
        if self._db_client is not None:
            closing = self._db_client.close()  # AsyncMongoClient: a coroutine; mongomock: None
            if asyncio.iscoroutine(closing):
                await closing

    async def _refresh_catalog(self) -> None:
        services = self.services
        while True:
            await asyncio.sleep(services.catalog.refresh_seconds)
            try:
                await services.catalog.reload()
                await services.upstream.reload()
            except Exception:
                log.exception("catalog refresh failed")


async def serve(settings: Settings, sockets: list | None = None) -> None:
    """Run one gateway process until SIGTERM or SIGINT."""
    gateway = Gateway(settings, sockets=sockets)
    try:
        await gateway.start()
    except ConnectionFailure as exc:
        print(f"cheaplm: cannot reach the database at MONGODB_URI ({type(exc).__name__}); "
              f"is it running and reachable?", file=sys.stderr)
        raise SystemExit(1) from None
    except PyMongoError as exc:
        print(f"cheaplm: the database refused start-up ({type(exc).__name__}): {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    log.info("CheapLM listening on http://%s:%d (upstream %s, pid %d)", settings.host, settings.port,
             settings.upstream_base_url, os.getpid())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.stop()
    log.info("stopped")


START_GRACE_SECONDS = 15.0  # a process that exits sooner failed to start, rather than crashed


def supervise(processes: int, settings: Settings) -> int:
    """Fork `processes` gateway processes sharing one listening socket and wait for them.

    One that dies after it started serving is replaced; one that fails during start-up
    (the same cause would stop every replacement) stops them all with exit status 1.
    SIGTERM/SIGINT are passed on to every process; returns 0 once all have stopped."""
    sockets = tornado.netutil.bind_sockets(settings.port, settings.host)
    started: dict[int, float] = {}  # pid -> when it was forked
    state = {"stopping": False, "status": 0}

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            try:
                asyncio.run(serve(settings, sockets))
            except SystemExit as exc:
                os._exit(exc.code if isinstance(exc.code, int) else 1)
            os._exit(0)
        started[pid] = time.monotonic()

    def stop_all(signum=signal.SIGTERM, _frame=None) -> None:
        state["stopping"] = True
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for _ in range(processes):
        spawn()
    while started:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        forked = started.pop(pid, None)
        code = os.waitstatus_to_exitcode(wait_status)
        if forked is None or code == 0 or state["stopping"]:
            continue
        if time.monotonic() - forked < START_GRACE_SECONDS:
            log.error("gateway process %d failed during start-up (exit %d); stopping", pid, code)
            state["status"] = 1
            stop_all()
        else:
            log.error("gateway process %d exited with %d; starting another", pid, code)
            spawn()
    return state["status"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="CheapLM gateway (settings come from the environment).")
    parser.add_argument("--processes", type=int, default=None, help="gateway processes sharing the port "
                        "(default: PROCESSES, 1); needs a real MongoDB when above 1")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.processes is not None:
            settings = dataclasses.replace(settings, processes=args.processes)
            settings.check()
    except ConfigError as exc:
        print(f"cheaplm: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.embedded and not settings.cookie_secret:
        log.warning("COOKIE_SECRET unset: sessions will not survive a restart")
    if settings.processes == 1:
        asyncio.run(serve(settings))
    else:
        raise SystemExit(supervise(settings.processes, settings))


if __name__ == "__main__":
    main()
