"""Real gateway processes (`python app.py`) for the fault and multi-process tests, in front
of a fake upstream run on a background loop of the test process."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pymongo

from tests.conftest import ADMIN_TOKEN, free_port
from tests.fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
METRICS_TOKEN = "metrics-token-0123456789"


class Upstream:
    """A FakeUpstream on its own thread's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakeUpstream()
        self.url = asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class GatewayProcess:
    """`python app.py` on a free port with the given database; `.url`, `.admin`, `.signal()`."""

    def __init__(self, database: dict, upstream: Upstream, *args: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1",
                   "MONGODB_URI": database["mongodb_uri"], "MONGODB_DB": database["mongodb_db"],
                   "UPSTREAM_BASE_URL": upstream.url, "UPSTREAM_API_KEY": upstream.fake.api_key,
                   "ADMIN_API_TOKEN": ADMIN_TOKEN, "COOKIE_SECRET": "test-cookie-secret-0123456789",
                   "METRICS_TOKEN": METRICS_TOKEN, "LOG_LEVEL": "WARNING",
                   **{k.upper(): str(v) for k, v in env.items()}}
        self.log = open(os.devnull, "wb") if not os.environ.get("TEST_GATEWAY_LOGS") else None
        self.process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *args], cwd=ROOT, env=environ,
                                        stdout=self.log, stderr=self.log)
        self.admin = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                  timeout=30)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway process exited with {self.process.returncode} at start-up")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gateway process did not start")
            time.sleep(0.1)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)

    def metrics(self) -> str:
        r = httpx.get(self.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
        assert r.status_code == 200, r.text
        return r.text

    def stop(self) -> None:
        self.admin.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self.log is not None:
            self.log.close()

    def user_with_key(self, credits: float = 100, username: str | None = None, **limits) -> tuple[str, str]:
        username = username or f"u{free_port()}"
        r = self.admin.post("/admin/api/users", json={"username": username, "password": "password-123",
                                                       "credits": credits})
        assert r.status_code == 201, r.text
        r = self.admin.post(f"/admin/api/users/{username}/keys", json={"name": "k", **limits})
        assert r.status_code == 201, r.text
        return username, r.json()["key"]


def gauge(metrics_text: str, name: str) -> float:
    """The value of an unlabelled metric in Prometheus text."""
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


def database(options: dict):
    """A synchronous handle of a test database (pymongo)."""
    return pymongo.MongoClient(options["mongodb_uri"], serverSelectionTimeoutMS=5000, tz_aware=True)[
        options["mongodb_db"]]


def message_body(directive: str = "", stream: bool = True, max_tokens: int = 200) -> dict:
    text = f"hello [[scenario: {directive}]]" if directive else "hello"
    return {"model": "claude-sonnet-4-6", "max_tokens": max_tokens, "stream": stream,
            "messages": [{"role": "user", "content": text}]}


class StreamReader(threading.Thread):
    """Reads one streamed /v1/messages answer in a thread: `.events`, `.first` (set at the
    first event), `.status`."""

    def __init__(self, url: str, key: str, directive: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.directive = url, key, directive
        self.events: list[str] = []
        self.status = 0
        self.error: Exception | None = None
        self.first = threading.Event()
        self.start()

    def run(self) -> None:
        try:
            with httpx.stream("POST", self.url + "/v1/messages", json=message_body(self.directive),
                              headers={"x-api-key": self.key, "anthropic-version": "2023-06-01"},
                              timeout=60) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        self.events.append(line[7:])
                        self.first.set()
        except Exception as exc:  # the test looks at what arrived
            self.error = exc
        finally:
            self.first.set()
