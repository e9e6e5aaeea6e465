"""Shared fixtures: a live gateway (real HTTP on 127.0.0.1) in front of a fake upstream.

The gateway and the fake run on their own event loop in a background thread, so tests can
use the official *synchronous* SDKs exactly as users do, and reach into the services with
`gateway.run(coro)` when they need to look at the database.

The database tier: `memory://` (the embedded store) unless TEST_MONGODB_URI names a real
server (any MongoDB 6+, or FerretDB: `python3 dev.py test` starts one). On a server each
gateway gets a fresh database, dropped when it stops, and only tests that use a database
fixture run (the others do not touch the database and already ran on the embedded tier).
"""
from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sys
import threading
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import app as app_module  # noqa: E402
from services.config import Settings  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402

ADMIN_TOKEN = "test-admin-token-0123456789-abcdefghij"
_names = itertools.count(1)

TEST_MONGODB_URI = os.environ.get("TEST_MONGODB_URI", "")
# Fixtures that give a test a database; on the server tier only tests using one of them run.
DATABASE_FIXTURES = {"gateway", "gateway_factory", "server_database"}
_databases = itertools.count(1)
_server: dict = {}


def server_client():
    """A synchronous client of the TEST_MONGODB_URI server (one per test session)."""
    if "client" not in _server:
        import pymongo

        _server["client"] = pymongo.MongoClient(TEST_MONGODB_URI, serverSelectionTimeoutMS=5000)
    return _server["client"]


def ferretdb_version() -> str | None:
    """FerretDB's version when the server tier runs on FerretDB, else None."""
    if not TEST_MONGODB_URI:
        return None
    if "ferretdb" not in _server:
        _server["ferretdb"] = server_client().admin.command("buildInfo").get("ferretdbVersion")
    return _server["ferretdb"]


def fresh_database() -> dict:
    """Settings overrides for a database no other gateway uses: a new database on the
    TEST_MONGODB_URI server, or the embedded store (always fresh)."""
    if not TEST_MONGODB_URI:
        return {"mongodb_uri": "memory://"}
    return {"mongodb_uri": TEST_MONGODB_URI, "mongodb_db": f"cheaplm_test_{os.getpid()}_{next(_databases)}"}


def drop_database(options: dict) -> None:
    """Drop a database made by fresh_database() (nothing to do for the embedded store)."""
    if options.get("mongodb_uri", "memory://") != "memory://":
        server_client().drop_database(options["mongodb_db"])


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "database: uses a database without a database fixture (e.g. "
                                       "Settings(**fresh_database())), so it runs on the server tier too")
    config.addinivalue_line("markers", "embedded_only(reason): runs only on the embedded memory:// store")
    config.addinivalue_line("markers", "not_on_ferretdb(reason): skipped when the server tier is FerretDB "
                                       "(a MongoDB feature FerretDB lacks)")


def pytest_report_header(config) -> str:
    if not TEST_MONGODB_URI:
        return "database tier: embedded (memory://)"
    version = ferretdb_version()
    server = f"FerretDB {version}" if version else f"MongoDB {server_client().server_info()['version']}"
    return f"database tier: server, {server} at TEST_MONGODB_URI={TEST_MONGODB_URI}"


def pytest_collection_modifyitems(config, items) -> None:
    if not TEST_MONGODB_URI:
        return
    keep, skipped = [], []
    for item in items:
        uses_database = DATABASE_FIXTURES & set(item.fixturenames) or item.get_closest_marker("database")
        (keep if uses_database else skipped).append(item)
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = keep
    for item in keep:
        if marker := item.get_closest_marker("embedded_only"):
            item.add_marker(pytest.mark.skip(reason=f"embedded store only: {marker.args[0]}"))
        elif (marker := item.get_closest_marker("not_on_ferretdb")) and ferretdb_version():
            item.add_marker(pytest.mark.skip(reason=f"FerretDB lacks it: {marker.args[0]}"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _awaited(awaitable):
    return await awaitable


class LiveGateway:
    """A running gateway + fake upstream, with helpers to set up users and keys."""

    def __init__(self, **overrides) -> None:
        # A database of its own unless the test names one (gateways sharing a database).
        self.database = {} if "mongodb_uri" in overrides else fresh_database()
        self.overrides = {**self.database, **overrides}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(self._start())
        self.admin = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                  timeout=30)

    def run(self, coro, timeout: float = 30):
        """Run a coroutine (or await a driver's future) on the gateway's loop and return its
        result. Motor's methods return futures where mongomock-motor's return coroutines."""
        if not asyncio.iscoroutine(coro):
            coro = _awaited(coro)
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.fake = FakeUpstream()
        upstream_url = await self.fake.start()
        port = free_port()
        options = {"port": port, "host": "127.0.0.1",
                   "upstream_base_url": upstream_url, "upstream_api_key": self.fake.api_key,
                   "admin_api_token": ADMIN_TOKEN, "cookie_secret": "test-cookie-secret-0123456789",
                   **self.overrides}
        settings = Settings.from_env({}, **options)
        self.gateway = app_module.Gateway(settings)
        await self.gateway.start()
        self.app, self.services = self.gateway.app, self.gateway.services
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self.gateway.stop()
        await self.fake.stop()

    def stop(self) -> None:
        self.admin.close()
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        drop_database(self.database)

    def create_user(self, credits: float = 100, *, username: str | None = None,
                    password: str = "password-123") -> str:
        username = username or f"user{next(_names)}"
        r = self.admin.post("/admin/api/users", json={"username": username, "password": password,
                                                       "credits": credits})
        assert r.status_code == 201, r.text
        return username

    def create_key(self, username: str, name: str = "test key", **limits) -> str:
        r = self.admin.post(f"/admin/api/users/{username}/keys", json={"name": name, **limits})
        assert r.status_code == 201, r.text
        return r.json()["key"]

    def user_with_key(self, credits: float = 100) -> tuple[str, str]:
        username = self.create_user(credits)
        return username, self.create_key(username)

    def user(self, username: str) -> dict:
        r = self.admin.get(f"/admin/api/users/{username}")
        assert r.status_code == 200, r.text
        return r.json()

    def micro_balance(self, username: str) -> tuple[int, int]:
        """(balance, held) in micro-credits, read straight from the database."""
        doc = self.run(self.services.db.users.find_one({"username": username}))
        return doc["balance"], doc["held"]

    def usage(self, username: str) -> list[dict]:
        async def rows():
            user = await self.services.users.by_username(username)
            return await self.services.usage.recent(user_id=user["_id"], limit=10_000)
        return self.run(rows())


@pytest.fixture
def gateway():
    gw = LiveGateway()
    yield gw
    gw.stop()


@pytest.fixture
def server_database():
    """Settings overrides naming a fresh database on the real server, for gateways (or
    gateway processes) that must share one: `gateway_factory(**server_database)`. Skips the
    test on the embedded tier; the database is dropped afterwards."""
    if not TEST_MONGODB_URI:
        pytest.skip("needs a real MongoDB server: set TEST_MONGODB_URI (python3 dev.py test does)")
    options = fresh_database()
    yield options
    drop_database(options)


@pytest.fixture
def gateway_factory():
    """Start gateways with custom settings: `gateway_factory(keepalive_interval=0.2)`."""
    started: list[LiveGateway] = []

    def make(**overrides) -> LiveGateway:
        gw = LiveGateway(**overrides)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
def upstream():
    """A fake upstream in a thread of its own, for gateways run as real processes."""
    from tests.processes import Upstream

    up = Upstream()
    yield up
    up.stop()


@pytest.fixture
def processes():
    """Real `python app.py` gateway processes a test starts (append them); stopped after it."""
    started: list = []
    yield started
    for p in started:
        p.stop()
