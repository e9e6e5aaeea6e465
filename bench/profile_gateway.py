"""Profile the gateway under benchmark load with py-spy and summarise where the time goes.

Same set-up as bench/run.py (fake upstream and driver on CPU 1, gateway alone on CPU 0,
a bench user with a key, warm-up), then for each profiled cell py-spy samples the gateway
while the driver keeps it saturated. Prints, per cell, the share of samples by package
(where the CPU is actually spent), the top functions by self time and the top functions
by inclusive time, and keeps the raw collapsed stacks in bench/results/profile-*.txt
(feed them to flamegraph.pl or speedscope for a picture) and the summary in
bench/results/profile-c<concurrency>[-after-burst<n>].md.

py-spy is a development tool, not a requirement: `.venv/bin/pip install py-spy`.

    .venv/bin/python bench/profile_gateway.py [--seconds 10] [--concurrency 50] [--burst 1000] [--chat]
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import procs
import run
from run import Bench, Cell

PACKAGES = [  # (label, substring of a py-spy frame's file) — first match wins
    ("gateway: handlers/", "handlers/"), ("gateway: services/", "services/"), ("gateway: app.py", "app.py"),
    ("mongomock", "mongomock/"), ("mongomock_motor", "mongomock_motor/"), ("bson / pymongo", "bson/"),
    ("bson / pymongo", "pymongo/"), ("httpx", "httpx/"), ("httpcore", "httpcore/"), ("anyio", "anyio/"),
    ("tornado", "tornado/"), ("h11", "h11/"), ("asyncio", "asyncio/"), ("copy (deepcopy)", "copy.py"),
    ("json / orjson", "json/"), ("python stdlib (other)", "python3.11/"),
]


EVENT_LOOP_FRAMES = ("(asyncio/runners.py)", "(asyncio/base_events.py)", "(asyncio/events.py)", "<module>")


def package_of(frame: str) -> str:
    for label, needle in PACKAGES:
        if needle in frame:
            return label
    return "other"


def read_stacks(path: Path) -> list[tuple[list[str], int]]:
    """py-spy raw output: one `frame;frame;…;leaf count` line per distinct stack."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks.append((stack.split(";"), int(count)))
    return stacks


# Phases of a request, in priority order: a sample belongs to the first phase with a frame
# on its stack. Library entry points are listed as well as gateway functions because on
# Python 3.11 py-spy often shows a resumed coroutine without the frames that awaited it.
PHASES = [
    ("usage record + daily rollup (UsageService.record)", ("UsageService.record",)),
    ("settlement: user update + ledger insert (BillingService.settle)", ("BillingService.settle",)),
    ("credit hold (BillingService.hold)", ("BillingService.hold",)),
    ("key check (KeyService.authenticate)", ("KeyService.authenticate",)),
    ("rate-limit counter (RateLimitService.check)", ("RateLimitService.check",)),
    ("request parsing (prepare_messages)", ("prepare_messages", "prepare_chat")),
    ("upstream: send request, read response head (UpstreamService.open)", ("UpstreamService.open",)),
    ("upstream: read body / stream chunks", ("Response.aread", "Response.aiter_raw")),
    ("upstream: close response", ("Response.aclose",)),
    ("SSE re-framing and usage parsing", ("EventBuffer.feed", ".events (services/protocols/")),
    ("tornado: write response to the client", ("RequestHandler.flush", "RequestHandler.finish",
                                               "RequestHandler.write")),
    ("other gateway code (handlers/, services/)", ("(handlers/", "(services/")),
    ("tornado: read and parse client requests", ("HTTP1ServerConnection", "HTTP1Connection")),
]


def phase_of(frames: list[str]) -> str:
    for label, needles in PHASES:
        if any(needle in frame for frame in frames for needle in needles):
            return label
    return f"event loop and the rest (leaf in {package_of(frames[-1])})"


def summarise(stacks: list[tuple[list[str], int]], *, top: int = 20) -> list[str]:
    """Markdown lines: samples by request phase and by package, top self and top inclusive
    functions (each as % of samples)."""
    total = sum(n for _, n in stacks) or 1
    by_phase, by_package, self_time, inclusive = Counter(), Counter(), Counter(), Counter()
    for frames, n in stacks:
        by_phase[phase_of(frames)] += n
        by_package[package_of(frames[-1])] += n
        self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"{total:,} samples (main thread holding the GIL)", "",
           "| phase of the request | % of samples |", "|---|---|"]
    out += [f"| {label} | {100 * n / total:.1f}% |" for label, n in by_phase.most_common()]
    out += ["", "| where (leaf frame's package) | % of samples |", "|---|---|"]
    out += [f"| {label} | {100 * n / total:.1f}% |" for label, n in by_package.most_common()]
    out += ["", "| top self time | % |", "|---|---|"]
    out += [f"| `{frame}` | {100 * n / total:.1f}% |" for frame, n in self_time.most_common(top)]
    out += ["", "| top inclusive time | % |", "|---|---|"]
    out += [f"| `{frame}` | {100 * n / total:.1f}% |" for frame, n in inclusive.most_common()
            if not any(boring in frame for boring in EVENT_LOOP_FRAMES)][:top * 2]
    return out


async def profile(bench: Bench, cells: list[Cell], *, seconds: float, rate: int, spy: str,
                  suffix: str = "") -> list[str]:
    report = []
    for cell in cells:
        name = f"{cell.api}-{'stream' if cell.stream else 'nonstream'}-c{cell.concurrency}{suffix}"
        out = run.RESULTS / f"profile-{name}.txt"
        proc = subprocess.Popen([spy, "record", "-p", str(bench.gateway.pid), "-d", str(int(seconds)), "-r", str(rate),
                                 "-f", "raw", "--nolineno", "--gil", "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.pin(proc.pid, bench.args.load_cpu)
        m = await bench.measure(bench.gateway, cell, seconds=seconds + 1)
        _, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")
        header = (f"## {cell.label}: {m.rate:,.0f}/s, {run.ms(m.cpu_ms_per_request)} ms gateway CPU per request "
                  f"(while sampled by py-spy at {rate} Hz), stacks in {out.relative_to(run.ROOT)}")
        report += [header, "", *summarise(read_stacks(out)), ""]
        bench.say(header)
    return report


async def main_async(bench: Bench, args: argparse.Namespace, spy: str) -> None:
    bench.start_fake()
    procs.pin(0, bench.args.load_cpu)
    bench.start_gateway()
    bench.set_up_user()
    await bench.probe_chat()
    await bench.warm_up()
    if args.burst:  # leave the gateway as a burst of open streams leaves it (a full upstream pool)
        bench.args.slow_streams = args.burst
        await bench.slow_streams()
    apis = ["messages", "chat"] if args.chat and bench.chat_available else ["messages"]
    cells = [Cell(api, stream, args.concurrency) for api in apis for stream in (False, True)]
    suffix = f"-after-burst{args.burst}" if args.burst else ""
    report = await profile(bench, cells, seconds=args.seconds, rate=args.rate, spy=spy, suffix=suffix)
    text = "\n".join(report) + "\n"
    print("\n" + text)
    (run.RESULTS / f"profile-c{args.concurrency}{suffix}.md").write_text(text)


def main() -> int:
    p = argparse.ArgumentParser(description="Profile the gateway under load with py-spy.")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--chat", action="store_true", help="also profile the chat endpoint")
    p.add_argument("--burst", type=int, default=0, help="first hold this many streams open at once, then release")
    p.add_argument("--summarise", metavar="STACKS", help="only summarise an existing raw stacks file")
    args, rest = p.parse_known_args()
    if args.summarise:
        print("\n".join(summarise(read_stacks(Path(args.summarise)))))
        return 0
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not spy:
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    bench = Bench(run.parse_args(rest))
    try:
        asyncio.run(main_async(bench, args, spy))
    finally:
        bench.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
