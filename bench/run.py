"""CheapLM benchmark (`make bench`): the gateway against a fake upstream, cell by cell.

Every cell runs twice in the same run: through the gateway and directly against the fake
upstream, so each figure is printed as gateway vs direct (added latency and a ratio).

Layout on a 2-CPU machine (see --gateway-cpu / --load-cpu):
    CPU 0  the gateway (`python app.py`), alone, everything on: key check, rate-limit
           counter, credit hold, settlement, usage record, ledger and rollup on every
           request, embedded store
    CPU 1  the fake upstream (bench/fake_upstream.py) and this load driver (one asyncio
           loop with a raw HTTP/1.1 client), sharing the core; the "load CPU %" column
           shows how busy that core was, so a driver-bound figure is visible as such

Cells: non-streamed /v1/messages and /v1/chat/completions, streamed messages and chat
(50 deltas), each at concurrency 1, 10 and 50; 100 streams paced at 50 tokens/s; 1,000
slow streams held open at once (gateway RSS sampled). The fake speaks only the Anthropic
API, so the chat cells' "direct" baseline is the same-shaped /v1/messages call.

Afterwards the user's credits must have dropped by exactly (successful requests × cost of
one request); the run exits non-zero if any request failed or that check fails.

    .venv/bin/python bench/run.py [--quick] [--seconds 4] [--mongodb-uri mongodb://…]

Writes the report to bench/results/latest.md (the processes' logs next to it); --publish
also writes the committed copy bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import loadgen
import procs
from loadgen import Check, Result

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"          # git-ignored
PUBLISHED = ROOT / "bench" / "RESULTS.md"     # the committed copy (--publish)
PYTHON = sys.executable
MODEL = "claude-sonnet-4"
PASSWORD = "bench-pass-123"
START_CREDITS = 100_000_000
INPUT_TOKENS, OUTPUT_TOKENS = 25, 150
DELTAS = 50
MICRO = 1_000_000


# --------------------------------------------------------------------------- requests

@dataclass(frozen=True)
class Cell:
    """One benchmark cell: an API shape at a concurrency, with a fake-upstream directive."""

    api: str                      # "messages" | "chat"
    stream: bool
    concurrency: int
    directive: str = f"deltas={DELTAS}"
    title: str = ""

    @property
    def label(self) -> str:
        if self.title:
            return self.title
        kind = "streamed" if self.stream else "non-streamed"
        return f"{kind} {self.api}, c={self.concurrency}"

    @property
    def direct_twin(self) -> "Cell":
        """The cell run against the fake directly (it only speaks /v1/messages)."""
        return Cell("messages", self.stream, self.concurrency, self.directive)


CHECKS = {("messages", False): loadgen.NON_STREAM_MESSAGES, ("messages", True): loadgen.STREAM_MESSAGES,
          ("chat", False): loadgen.NON_STREAM_CHAT, ("chat", True): loadgen.STREAM_CHAT}


@dataclass(frozen=True)
class Target:
    """Where requests go: the gateway (with a bench user's key) or the fake upstream."""

    name: str
    port: int
    pid: int
    api_key: str

    def request(self, cell: Cell) -> bytes:
        """The raw HTTP request for one call of `cell`."""
        content = f"Say hello. [[bench {cell.directive}]]"
        body: dict = {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": content}]}
        if cell.stream:
            body["stream"] = True
        if cell.api == "chat":
            path, auth = "/v1/chat/completions", f"authorization: Bearer {self.api_key}\r\n"
            if cell.stream:
                body["stream_options"] = {"include_usage": True}
        else:
            path, auth = "/v1/messages", f"x-api-key: {self.api_key}\r\nanthropic-version: 2023-06-01\r\n"
        payload = json.dumps(body).encode()
        head = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\ncontent-type: application/json\r\n"
                f"{auth}content-length: {len(payload)}\r\n\r\n")
        return head.encode() + payload


# --------------------------------------------------------------------------- statistics

def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@dataclass
class Measurement:
    """One cell on one target: counts, rate, latency percentiles (ms) and CPU use."""

    target: str
    ok: int
    failed: int
    elapsed: float
    lat: tuple[float | None, float | None]     # p50, p95 (ms), request written → last byte
    ttfb: float | None                         # p50 (ms)
    ttft: tuple[float | None, float | None]    # p50, p95 (ms), streams only
    gateway_cpu: float | None                  # CPU seconds the gateway used (gateway target only)
    others_cpu: float | None                   # CPU seconds others used on the gateway's CPU
    load_cpu: float                            # CPU seconds the driver + fake used
    errors: list[str] = field(default_factory=list)
    credits_used: str | None = None            # one x-cheaplm-credits-used header seen
    upstream_connections: int | None = None    # connections open to the fake after the cell

    @classmethod
    def of(cls, target: str, results: list[Result], elapsed: float, gateway_cpu: float | None,
           others_cpu: float | None, load_cpu: float) -> "Measurement":
        good = [r for r in results if r.ok]
        lat = sorted(r.latency * 1000 for r in good)
        ttfb = sorted(r.ttfb * 1000 for r in good if r.ttfb is not None)
        ttft = sorted(r.ttft * 1000 for r in good if r.ttft is not None)
        errors = list(dict.fromkeys(r.error for r in results if not r.ok))[:3]
        credits = next((r.credits_used for r in good if r.credits_used), None)
        return cls(target, len(good), len(results) - len(good), elapsed,
                   (percentile(lat, .5), percentile(lat, .95)), percentile(ttfb, .5),
                   (percentile(ttft, .5), percentile(ttft, .95)), gateway_cpu, others_cpu, load_cpu,
                   errors, credits)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        return self.gateway_cpu * 1000 / self.ok if self.gateway_cpu is not None and self.ok else None

    def util(self, cpu: float | None) -> float | None:
        return 100 * cpu / self.elapsed if cpu is not None and self.elapsed else None


# --------------------------------------------------------------------------- the run

class Bench:
    """Starts the fake upstream and the gateway, runs the cells, checks billing, reports."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.machine = procs.machine()
        self.log_path = RESULTS / "gateway.log"
        self.fake_proc: subprocess.Popen | None = None
        self.gw_proc: subprocess.Popen | None = None
        self.direct: Target | None = None
        self.gateway: Target | None = None
        self.layout: list[str] = []
        self.billed_ok = 0                    # successful gateway calls (each must be billed)
        self.chat_available = True
        self.price_micro = 0
        self.rows: list[tuple[Cell, Measurement | None, Measurement]] = []
        self.direct_cache: dict[Cell, Measurement] = {}
        self.memory: dict[str, float] = {}
        self.capacity: list[str] = []
        self.failures = 0
        self.billing_line = ""
        self.billing_ok = False
        self.credits_header: str | None = None  # x-cheaplm-credits-used of a non-streamed call
        self.progress = 0

    # -- processes ------------------------------------------------------------------
    def start_fake(self) -> None:
        port, key = procs.free_port(), "sk-fake-" + secrets.token_hex(8)
        log = RESULTS / "fake_upstream.log"
        self.fake_proc = procs.start(
            [PYTHON, "bench/fake_upstream.py", "--port", str(port), "--api-key", key, "--deltas", str(DELTAS),
             "--input-tokens", str(INPUT_TOKENS), "--output-tokens", str(OUTPUT_TOKENS)],
            cpu=self.args.load_cpu, cwd=ROOT, log=log)
        procs.wait_http(f"http://127.0.0.1:{port}/bench/stats", self.fake_proc, log=log, method="GET")
        self.direct = Target("direct", port, self.fake_proc.pid, key)
        self.layout.append(f"fake upstream pid {self.fake_proc.pid}: {where(self.args.load_cpu)}, "
                           f"bench/fake_upstream.py (asyncio.Protocol server)")

    def start_gateway(self) -> None:
        port, admin = procs.free_port(), secrets.token_hex(16)
        env = {"PORT": str(port), "HOST": "127.0.0.1", "MONGODB_URI": self.args.mongodb_uri,
               "UPSTREAM_BASE_URL": f"http://127.0.0.1:{self.direct.port}", "UPSTREAM_API_KEY": self.direct.api_key,
               "ADMIN_API_TOKEN": admin, "LOG_LEVEL": "WARNING", "COOKIE_SECRET": secrets.token_hex(16),
               "RATE_LIMIT_RPM": str(self.args.rate_limit_rpm)}
        if not self.args.mongodb_uri.startswith("memory://"):
            env["MONGODB_DB"] = self.args.mongodb_db
        command = [PYTHON, "app.py", "--processes", str(self.args.processes)]
        self.gw_proc = procs.start(command, cpu=self.args.gateway_cpu, env=env, cwd=ROOT, log=self.log_path)
        procs.wait_http(f"http://127.0.0.1:{port}/", self.gw_proc, log=self.log_path)
        self.admin_token, self.gw_port = admin, port
        self.layout.insert(0, f"gateway pid {self.gw_proc.pid}: {where(self.args.gateway_cpu)}, `python app.py --processes {self.args.processes}`, "
                              f"MONGODB_URI={self.args.mongodb_uri}, LOG_LEVEL=WARNING, "
                              f"RATE_LIMIT_RPM={self.args.rate_limit_rpm} (every request counted, in memory and shared through the store each second as far below a limit; never reached)")

    def stop_all(self) -> None:
        for proc in (self.gw_proc, self.fake_proc):
            if proc is not None:
                procs.stop(proc)
        self.gw_proc = self.fake_proc = None

    # -- set-up through the management API -----------------------------------------
    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.gw_port}", timeout=30, trust_env=False) as c:
            return c.request(method, path, headers={"Authorization": f"Bearer {self.admin_token}"}, **kwargs)

    def set_up_user(self) -> None:
        """A bench user with START_CREDITS and one key; the model's price from /v1/models/info."""
        self.username = "bench-" + secrets.token_hex(4)
        r = self.admin("POST", "/admin/api/users",
                       json={"username": self.username, "password": PASSWORD, "credits": START_CREDITS})
        r.raise_for_status()
        r = self.admin("POST", f"/admin/api/users/{self.username}/keys", json={"name": "bench"})
        r.raise_for_status()
        key = r.json()["key"]
        self.gateway = Target("gateway", self.gw_port, self.gw_proc.pid, key)
        info = httpx.get(f"http://127.0.0.1:{self.gw_port}/v1/models/info", headers={"x-api-key": key},
                         trust_env=False).json()
        model = next(m for m in info["data"] if MODEL == m["id"] or MODEL in m["aliases"])
        self.price_micro = round(model["cost_per_1k_tokens"] * MICRO)

    @property
    def cost_micro(self) -> int:
        """What one request costs: (input + output tokens) × price per 1K, rounded up."""
        return -(-(INPUT_TOKENS + OUTPUT_TOKENS) * self.price_micro // 1000)

    # -- measuring --------------------------------------------------------------------
    async def measure(self, target: Target, cell: Cell, *, count: int | None = None,
                      seconds: float | None = None, timeout: float = 30.0, on_token=None) -> Measurement:
        gw_pid = self.gateway.pid if self.gateway else None
        gw0 = procs.tree_cpu_seconds(gw_pid) if gw_pid else None
        busy0 = procs.cpu_busy_seconds(self.args.gateway_cpu)
        load0 = procs.cpu_seconds(0) + procs.cpu_seconds(self.direct.pid)
        results, elapsed = await loadgen.run_load(
            "127.0.0.1", target.port, target.request(cell), CHECKS[cell.api, cell.stream],
            concurrency=cell.concurrency, count=count or self.args.count, seconds=seconds or self.args.seconds,
            timeout=timeout, on_token=on_token)
        gw_cpu = procs.tree_cpu_seconds(gw_pid) - gw0 if gw_pid and target.name == "gateway" else None
        load_cpu = procs.cpu_seconds(0) + procs.cpu_seconds(self.direct.pid) - load0
        others = None
        if gw_cpu is not None and busy0 is not None:  # anything else that ran on the gateway's CPU
            others = max(0.0, procs.cpu_busy_seconds(self.args.gateway_cpu) - busy0 - gw_cpu)
        m = Measurement.of(target.name, results, elapsed, gw_cpu, others, load_cpu)
        self.failures += m.failed
        if target.name == "gateway":
            self.billed_ok += m.ok
            m.upstream_connections = self.fake_stats()["connections"] - 1  # minus this stats call's own
        return m

    def fake_stats(self) -> dict:
        """The fake's counters; "connections" is the gateway's upstream pool when no load runs."""
        with httpx.Client(trust_env=False) as c:
            return c.get(f"http://127.0.0.1:{self.direct.port}/bench/stats").json()

    async def direct_for(self, cell: Cell, **kwargs) -> Measurement:
        twin = cell.direct_twin
        if twin not in self.direct_cache:
            self.direct_cache[twin] = await self.measure(self.direct, twin, **kwargs)
        return self.direct_cache[twin]

    def say(self, text: str) -> None:
        print(text, flush=True)

    def report_progress(self, cell: Cell, gw: Measurement | None, direct: Measurement) -> None:
        self.progress += 1
        if gw is None:
            gw_text = "n/a (endpoint missing)"
        else:
            gw_text = f"{gw.rate:,.0f}/s p50 {ms(gw.lat[0])} ms, CPU {gateway_cpu_text(gw)}, {gw.failed} failed"
        self.say(f"[{self.progress:2d}] {cell.label:32s} gateway {gw_text} | direct {direct.rate:,.0f}/s "
                 f"p50 {ms(direct.lat[0])} ms, {direct.failed} failed")
        for m in (gw, direct):
            for error in (m.errors if m else []):
                self.say(f"     {m.target} error: {error}")

    async def fake_capacity(self) -> None:
        """Direct c=50 cells first: the fake's capacity (they double as the grid's baselines)."""
        for stream in (False, True):
            cell = Cell("messages", stream, 50)
            fake0 = procs.cpu_seconds(self.direct.pid)
            m = await self.direct_for(cell)
            fake_cpu = procs.cpu_seconds(self.direct.pid) - fake0
            per_cpu_s = m.ok / fake_cpu if fake_cpu else float("inf")
            what = "streams (50 deltas)" if stream else "non-streamed requests"
            line = (f"fake upstream, {what}: {m.rate:,.0f}/s measured with the driver on the same CPU "
                    f"({m.util(fake_cpu):.0f}% fake, {m.util(m.load_cpu - fake_cpu):.0f}% driver); "
                    f"fake alone ≈ {per_cpu_s:,.0f}/s per CPU-second")
            self.capacity.append(line)
            self.say(line)
            if m.failed:
                self.say(f"     direct errors: {m.errors}")

    async def probe_chat(self) -> None:
        results, _ = await loadgen.run_load("127.0.0.1", self.gateway.port,
                                            self.gateway.request(Cell("chat", False, 1)), loadgen.NON_STREAM_CHAT,
                                            concurrency=1, count=1, seconds=10)
        if results[0].status == 404:
            self.chat_available = False
            self.say("/v1/chat/completions answers 404: chat cells are n/a (endpoint missing)")
        elif results[0].ok:
            self.billed_ok += 1

    async def warm_up(self) -> None:
        apis = ["messages", "chat"] if self.chat_available else ["messages"]
        for api in apis:
            for stream in (False, True):
                m = await self.measure(self.gateway, Cell(api, stream, 10), count=self.args.warmup, seconds=30)
                if m.failed:
                    self.say(f"warm-up {api} stream={stream}: {m.failed} failed: {m.errors}")
                if m.credits_used and not stream:
                    self.credits_header = m.credits_used
        self.memory["idle_mb"] = procs.rss_kb(self.gateway.pid) / 1024
        self.say(f"warm-up done ({self.billed_ok} requests); gateway idle RSS {self.memory['idle_mb']:.1f} MB")

    async def cell(self, cell: Cell, **limits) -> None:
        """One table row: the cell directly (cached) and through the gateway (if it has the route)."""
        direct = await self.direct_for(cell, **limits)
        available = cell.api == "messages" or self.chat_available
        gw = await self.measure(self.gateway, cell, **limits) if available else None
        self.rows.append((cell, gw, direct))
        self.report_progress(cell, gw, direct)

    async def grid(self) -> None:
        for api in ("messages", "chat"):
            for stream in (False, True):
                for c in (1, 10, 50):
                    await self.cell(Cell(api, stream, c))

    async def paced(self) -> None:
        n = self.args.paced_streams
        await self.cell(Cell("messages", True, n, f"deltas={DELTAS} rate=50", f"{n} paced streams, 50 tok/s"),
                        count=n, seconds=120)

    async def after_burst(self) -> None:
        """Non-streamed c=1 again, now that the burst of slow streams has come and gone."""
        await self.cell(Cell("messages", False, 1, title="non-streamed messages, c=1, after the slow-stream burst"))

    async def slow_streams(self) -> None:
        """`n` streams held open at once; gateway RSS just before and while they are all open."""
        n = self.args.slow_streams
        cell = Cell("messages", True, n, f"deltas={DELTAS} hold=1", f"{n} slow streams held open")
        mem = self.memory
        mem["direct_open_s"], _, direct = await self.hold_open(self.direct, cell)
        before = procs.rss_kb(self.gateway.pid)
        mem["gateway_open_s"], peak, gw = await self.hold_open(self.gateway, cell)
        mem.update(before_mb=before / 1024, open_mb=peak / 1024, streams=n, kb_per_stream=(peak - before) / n,
                   gateway_failed=gw.failed, direct_failed=direct.failed)
        self.say(f"[ *] {cell.label}: gateway RSS {mem['before_mb']:.1f} → {mem['open_mb']:.1f} MB "
                 f"= {mem['kb_per_stream']:.1f} KB/stream; all open after {mem['gateway_open_s']:.2f} s "
                 f"(direct {mem['direct_open_s']:.2f} s); failed gateway {gw.failed}, direct {direct.failed}")

    async def hold_open(self, target: Target, cell: Cell) -> tuple[float, int, Measurement]:
        """Open cell.concurrency held streams; once every one has its first token, sample the
        gateway's RSS five times over half a second, release them and wait for their ends.

        Returns (seconds until all were open, peak RSS in KiB, the measurement).
        """
        n, opened, all_open = cell.concurrency, 0, asyncio.Event()

        def on_token() -> None:
            nonlocal opened
            opened += 1
            if opened == n:
                all_open.set()

        load = asyncio.ensure_future(self.measure(target, cell, count=n, seconds=300, timeout=120,
                                                  on_token=on_token))
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(all_open.wait(), 60)
        except asyncio.TimeoutError:
            self.say(f"     only {opened} of {n} {target.name} streams were open after 60 s")
            self.failures += 1
        open_s = time.perf_counter() - t0
        peak = 0
        for _ in range(5):
            peak = max(peak, procs.rss_kb(self.gateway.pid))
            await asyncio.sleep(0.1)
        await self.release_held()
        return open_s, peak, await load

    async def release_held(self) -> None:
        conn = await loadgen.connect("127.0.0.1", self.direct.port)
        raw = b"POST /bench/release HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
        await conn.request(raw, Check("release", b"released"), timeout=10)
        conn.close()

    def check_billing(self) -> None:
        """Credits must have dropped by exactly billed_ok × the cost of one request."""
        user = self.admin("GET", f"/admin/api/users/{self.username}").json()
        spent = START_CREDITS * MICRO - round(user["credits"] * MICRO)
        expected = self.billed_ok * self.cost_micro
        header = self.credits_header
        header_ok = header is None or round(float(header) * MICRO) == self.cost_micro
        self.billing_ok = spent == expected and user["held"] == 0 and header_ok
        self.billing_line = (
            f"billing check {'OK' if self.billing_ok else 'FAILED'}: {self.billed_ok:,} successful gateway "
            f"requests × {self.cost_micro / MICRO:g} credits ({INPUT_TOKENS + OUTPUT_TOKENS} tokens × "
            f"{self.price_micro / MICRO:g}/1K) = {expected / MICRO:,.6f} expected; credits dropped by "
            f"{spent / MICRO:,.6f}; held now {user['held']:g}; x-cheaplm-credits-used header {header}")
        self.say(self.billing_line)

    def pages(self) -> str:
        """The website's render times for heavy accounts (bench/pages.py, gateway CPU)."""
        self.say("pages: rendering the site for heavy accounts (bench/pages.py)")
        renders = "5" if self.args.quick else "20"
        cpu = self.args.gateway_cpu
        done = subprocess.run([sys.executable, str(ROOT / "bench" / "pages.py"), "--renders", renders], cwd=ROOT,
                              capture_output=True, text=True, timeout=600,
                              preexec_fn=None if cpu is None else lambda: procs.pin(0, cpu))
        if done.returncode != 0:
            self.failures += 1
            return f"bench/pages.py failed:\n\n```\n{done.stderr[-2000:]}\n```"
        return done.stdout.strip()

    async def run(self) -> int:
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.start_fake()
        procs.pin(0, self.args.load_cpu)
        self.layout.append(f"load driver pid {os.getpid()} (this process, one asyncio loop, raw HTTP/1.1 "
                           f"client): {where(self.args.load_cpu)}")
        self.say("CheapLM benchmark — " + self.machine)
        await self.fake_capacity()
        self.start_gateway()
        for line in self.layout:
            self.say(line)
        self.set_up_user()
        await self.probe_chat()
        await self.warm_up()
        await self.grid()
        await self.paced()
        await self.slow_streams()  # last: the burst leaves the gateway's upstream pool full
        await self.after_burst()
        self.memory["end_mb"] = procs.rss_kb(self.gateway.pid) / 1024
        self.check_billing()
        self.stop_all()
        self.pages_report = self.pages()
        report = render(self)
        print("\n" + report)
        out = Path(self.args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
        self.say(f"written to {out}")
        if self.args.publish:
            PUBLISHED.write_text(report)
            self.say(f"and to {PUBLISHED} (committed copy)")
        return 0 if self.failures == 0 and self.billing_ok else 1


# --------------------------------------------------------------------------- report

def where(cpu: int | None) -> str:
    return "unpinned" if cpu is None else f"pinned to CPU {cpu}"


def ms(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if sign else f"{value:.2f}"


def pair(a: float | None, b: float | None, sign: bool = False) -> str:
    return f"{ms(a, sign)} / {ms(b, sign)}"


def at_most(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def seconds(value_ms: float | None) -> float | None:
    return value_ms / 1000 if value_ms is not None else None


def diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}%"


def gateway_cpu_text(m: Measurement) -> str:
    """The gateway's CPU use, flagged when other processes took a noticeable share of its CPU."""
    text = pct(m.util(m.gateway_cpu))
    others = m.util(m.others_cpu)
    return f"{text} (+{others:.0f}% others!)" if others is not None and others >= 5 else text


def cell_row(cell: Cell, gw: Measurement | None, direct: Measurement) -> str:
    """One line of the cells table (columns as in `render`)."""
    unit = "streams/s" if cell.stream else "req/s"
    direct_rate, direct_lat = f"{direct.rate:,.0f} {unit}", pair(*direct.lat)
    if gw is None:
        cols = ["n/a (endpoint missing)", direct_rate, "–", "–", direct_lat, "–", "–", "–", "–", "–", "–",
                f"– / {direct.failed}"]
    else:
        cols = [f"{gw.rate:,.0f} {unit}", direct_rate, f"{gw.rate / direct.rate:.2f}×" if direct.rate else "–",
                pair(*gw.lat), direct_lat,
                pair(diff(gw.lat[0], direct.lat[0]), diff(gw.lat[1], direct.lat[1]), sign=True),
                ms(diff(gw.ttft[0], direct.ttft[0]), sign=True) if cell.stream else "–",
                ms(gw.cpu_ms_per_request), gateway_cpu_text(gw), pct(gw.util(gw.load_cpu)),
                str(gw.upstream_connections), f"{gw.failed} / {direct.failed}"]
    return "| " + " | ".join([cell.label, *cols]) + " |"


def targets_table(b: Bench) -> list[str]:
    """Each target from issue 5 beside the measured figure."""
    rows = {(c.api, c.stream, c.concurrency): (gw, d) for c, gw, d in b.rows if not c.title}
    paced = next((gw for c, gw, d in b.rows if c.title and "paced" in c.title), None)

    def rate(api: str, stream: bool, goal: float) -> tuple[str, bool | None]:
        gw = rows[api, stream, 50][0]
        return ("n/a (endpoint missing)", None) if gw is None else (f"{gw.rate:,.0f}/s", gw.rate >= goal)

    gw1, d1 = rows["messages", False, 1]
    add50, add95 = diff(gw1.lat[0], d1.lat[0]), diff(gw1.lat[1], d1.lat[1])
    s1, sd1 = rows["messages", True, 1]
    ttft = diff(s1.ttft[0], sd1.ttft[0])
    chat_s1, chat_sd1 = rows["chat", True, 1]
    ttft_chat = f" (chat {ms(diff(chat_s1.ttft[0], chat_sd1.ttft[0]), True)} ms)" if chat_s1 else ""
    cpu = rows["messages", False, 50][0].cpu_ms_per_request
    chat_cpu = rows["chat", False, 50][0]
    cpu_chat = f" (chat {ms(chat_cpu.cpu_ms_per_request)} ms)" if chat_cpu else ""
    mem = b.memory
    items = [
        ("added latency p50 / p95, non-streamed messages, c=1", "≤ 1.5 / ≤ 3 ms",
         f"{pair(add50, add95, True)} ms", at_most(add50, 1.5) and at_most(add95, 3)),
        ("non-streamed messages, c=50", "≥ 1,500 req/s", *rate("messages", False, 1500)),
        ("non-streamed chat completions, c=50", "≥ 1,200 req/s", *rate("chat", False, 1200)),
        ("streamed messages, 50 deltas, c=50", "≥ 1,000 streams/s", *rate("messages", True, 1000)),
        ("streamed chat, 50 deltas, c=50", "≥ 800 streams/s", *rate("chat", True, 800)),
        ("added time to first token p50, c=1", "≤ 1.5 ms", f"{ms(ttft, True)} ms{ttft_chat}", at_most(ttft, 1.5)),
        (f"{b.args.paced_streams} paced streams at 50 tok/s, p50 / p95 duration (ideal 1.0 s)", "≤ 1.1 s",
         f"{pair(*(seconds(v) for v in paced.lat))} s", at_most(seconds(paced.lat[1]), 1.1)),
        (f"idle RSS after warm-up / per open slow stream ({mem['streams']:,} open)", "≤ 80 MB / ≤ 40 KB",
         f"{mem['idle_mb']:.1f} MB / {mem['kb_per_stream']:.1f} KB",
         mem["idle_mb"] <= 80 and mem["kb_per_stream"] <= 40),
        ("CPU per non-streamed request (messages, c=50)", "≤ 0.6 ms", f"{ms(cpu)} ms{cpu_chat}",
         at_most(cpu, 0.6)),
    ]
    lines = ["| figure | target | measured | verdict |", "|---|---|---|---|"]
    for figure, goal, measured, met in items:
        verdict = "n/a" if met is None else ("met" if met else "**missed**")
        lines.append(f"| {figure} | {goal} | {measured} | {verdict} |")
    return lines


def git(*args: str) -> str:
    """Output of a read-only git command in the repository ("" if git is unavailable)."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def render(b: Bench) -> str:
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", ".", ":!bench"):
        commit += " + uncommitted changes"
    mem = b.memory
    lines = [f"# CheapLM benchmark — {now}", "",
             f"- machine: {b.machine}; Python {sys.version.split()[0]}; gateway commit {commit}",
             *[f"- {line}" for line in b.layout],
             *[f"- {line}" for line in b.capacity],
             f"- per cell: at most {b.args.count:,} requests or {b.args.seconds:g} s; "
             f"warm-up {b.args.warmup} requests per endpoint shape; every stream checked for its proper end",
             "", "## Targets (issue 5)", "", *targets_table(b), "",
             "## Cells: gateway vs direct (fake upstream)", "",
             "| cell | gateway | direct | ratio | gateway p50 / p95 ms | direct p50 / p95 ms | added p50 / p95 ms "
             "| added TTFT p50 ms | gateway CPU ms/req | gateway CPU % | load CPU % | upstream conns | failed gw / direct |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
             *[cell_row(c, gw, d) for c, gw, d in b.rows], "",
             "Latency is request written → last byte (whole stream for streams). Chat cells' direct baseline "
             "is the same /v1/messages call (the fake has no chat endpoint). \"gateway CPU %\" is of its one "
             "CPU (\"+N% others!\": other processes used that much of the same CPU during the cell, so the "
             "figure is disturbed); \"load CPU %\" is the driver plus the fake on the other CPU: near 100% "
             "means that figure is driver-bound, not gateway-bound. \"upstream conns\": connections the gateway "
             "still held open to the fake after the cell (the upstream client's keep-alive pool).", "",
             "## Memory (gateway VmRSS)", "",
             f"- idle after warm-up: {mem['idle_mb']:.1f} MB; at the end of the run: {mem['end_mb']:.1f} MB "
             "(the embedded store keeps every usage record and ledger entry in memory)",
             f"- {mem['streams']:,} slow streams open: {mem['before_mb']:.1f} → {mem['open_mb']:.1f} MB = "
             f"{mem['kb_per_stream']:.1f} KB per open stream; all open after {mem['gateway_open_s']:.2f} s "
             f"(direct {mem['direct_open_s']:.2f} s); failed gateway {mem['gateway_failed']}, "
             f"direct {mem['direct_failed']}", "",
             f"- {b.billing_line}",
             f"- failed requests in total: {b.failures}", "",
             "## Website pages (bench/pages.py)", "", b.pages_report]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="CheapLM gateway benchmark (see the module docstring).")
    p.add_argument("--quick", action="store_true", help="~1 minute smoke run: 1 s per cell, short warm-up")
    p.add_argument("--seconds", type=float, default=4.0, help="time limit per cell (default 4)")
    p.add_argument("--count", type=int, default=100_000, help="request limit per cell")
    p.add_argument("--warmup", type=int, default=500, help="warm-up requests per endpoint shape")
    p.add_argument("--paced-streams", type=int, default=100)
    p.add_argument("--slow-streams", type=int, default=1000)
    p.add_argument("--gateway-cpu", type=int, default=0, help="CPU the gateway is pinned to (-1: unpinned)")
    p.add_argument("--load-cpu", type=int, default=1, help="CPU for the fake and the driver (-1: unpinned)")
    p.add_argument("--mongodb-uri", default="memory://", help="the gateway's store (default embedded)")
    p.add_argument("--rate-limit-rpm", type=int, default=1_000_000_000,
                   help="the key's rate limit: counted on every request; 0 turns rate limiting off")
    p.add_argument("--mongodb-db", default="cheaplm_bench", help="database name with a real MongoDB")
    p.add_argument("--processes", type=int, default=1, help="gateway processes (app.py --processes; "
                   "above 1 needs --mongodb-uri); the gateway's CPU is summed over them")
    p.add_argument("--output", default=str(RESULTS / "latest.md"))
    p.add_argument("--publish", action="store_true", help=f"also write {PUBLISHED.relative_to(ROOT)}")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup = 1.0, 100
    if len(os.sched_getaffinity(0)) < 2:
        args.gateway_cpu = args.load_cpu = -1
    args.gateway_cpu = None if args.gateway_cpu < 0 else args.gateway_cpu
    args.load_cpu = None if args.load_cpu < 0 else args.load_cpu
    return args


def main() -> int:
    bench = Bench(parse_args())
    try:
        return asyncio.run(bench.run())
    finally:
        bench.stop_all()


if __name__ == "__main__":
    sys.exit(main())
