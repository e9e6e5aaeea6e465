"""Shared fixtures: a live gateway (real HTTP on 127.0.0.1) in front of a fake upstream.

The gateway and the fake run on their own event loop in a background thread, so tests can
use the official *synchronous* SDKs exactly as users do, and reach into the services with
`gateway.run(coro)` when they need to look at the database.
"""
from __future__ import annotations

import asyncio
import itertools
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

ADMIN_TOKEN = "test-admin-token-0123456789"
_names = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveGateway:
    """A running gateway + fake upstream, with helpers to set up users and keys."""

    def __init__(self, **overrides) -> None:
        self.overrides = overrides
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(self._start())
        self.admin = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                  timeout=30)

    def run(self, coro, timeout: float = 30):
        """Run a coroutine on the gateway's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.fake = FakeUpstream()
        upstream_url = await self.fake.start()
        port = free_port()
        options = {"port": port, "host": "127.0.0.1", "mongodb_uri": "memory://",
                   "upstream_base_url": upstream_url, "upstream_api_key": self.fake.api_key,
                   "admin_api_token": ADMIN_TOKEN, "cookie_secret": "test-cookie-secret-0123456789",
                   **self.overrides}
        settings = Settings.from_env({}, **options)
        self.server, self.app = await app_module.start(settings)
        self.services = self.app.settings["services"]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        self.app.settings["keepalive"].stop()
        self.server.stop()
        await self.services.upstream.aclose()
        await self.fake.stop()

    def stop(self) -> None:
        self.admin.close()
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

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
