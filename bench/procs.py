"""Processes for the benchmark: start them pinned to a CPU, wait for them, read /proc.

Linux only (CPU affinity and /proc/<pid>/{stat,status}).
"""
from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(pid: int, cpu: int | None) -> None:
    """Pin a process (0 = this one) to one CPU (None: leave it alone)."""
    if cpu is not None:
        os.sched_setaffinity(pid, {cpu})


def start(cmd: list[str], *, cpu: int | None, env: dict[str, str] | None = None, cwd: Path,
          log: Path) -> subprocess.Popen:
    """Start `cmd` with `taskset -c <cpu>` semantics; stdout+stderr go to `log`."""
    out = log.open("wb")
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    pin(proc.pid, cpu)  # before it has finished importing, so it never runs elsewhere for long
    return proc


def stop(proc: subprocess.Popen, *, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time (only this process)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_http(url: str, proc: subprocess.Popen, *, log: Path, timeout: float = 30.0,
              method: str = "HEAD") -> None:
    """Poll `url` until it answers 200; raise with the log's tail if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(proc.args)} exited with {proc.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{tail(log)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def rss_kb(pid: int) -> int:
    """Resident set size (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (pid 0 = this process)."""
    if pid == 0:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children (`python app.py --processes N` forks its
    gateway processes; their time is not the parent's until they exit)."""
    total = cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    for child in children:
        try:
            total += cpu_seconds(int(child))
        except OSError:
            pass  # exited between the listing and the read
    return total


def cpu_busy_seconds(cpu: int | None) -> float | None:
    """Non-idle time of one CPU, all processes together (user+nice+system+irq+softirq+steal)."""
    if cpu is None:
        return None
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(v) for v in line.split()[1:]]
            return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK  # minus idle and iowait
    return None


def machine() -> str:
    """`nproc` and the CPU model, for the report header."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}"
