#!/usr/bin/env python3
"""A real MongoDB-protocol server for the tests and benchmarks, with nothing but Python 3.11.

    python3 tools/ferretdb.py build            # find or build the server binary, print its path
    python3 tools/ferretdb.py run -- CMD ...   # start a throwaway server, run CMD with
                                               # TEST_MONGODB_URI set to it, stop the server
    python3 tools/ferretdb.py serve            # start one and keep it until Ctrl-C

The server is `ferretdb` (PATH, then ~/.cache/cheaplm/bin) or else `mongod` (PATH). With
neither but a Go toolchain, FerretDB 1.24.2 is built into ~/.cache/cheaplm/bin (a few
minutes the first time, instant afterwards). Each server started here listens on a free
127.0.0.1 port, keeps its data in a fresh temporary directory and is removed when stopped.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
# What the patched build reports as its version (buildInfo's ferretdbVersion): see _patch().
BUILD_VERSION = FERRETDB_VERSION + "-cheaplm.1"
# FerretDB 1.x runs update, findAndModify and delete as "query, change in Go, write back"
# with no transaction around them (FerretDB issue #3040), so two clients updating one
# document at once lose one update: 200 concurrent `$inc`s of one field leave it at ~20.
# MongoDB makes every single-document write atomic and the gateway's money depends on it,
# so the build serializes those three commands in the server (SQLite has one writer anyway).
ATOMIC_WRITES = """package handler

import "sync"

// readModifyWrite serializes the commands that read a document and write it back, making
// each single-document write atomic as in MongoDB (added by CheapLM's tools/ferretdb.py).
var readModifyWrite sync.Mutex
"""
PATCHED_COMMANDS = {"msg_update.go": "MsgUpdate", "msg_findandmodify.go": "MsgFindAndModify",
                    "msg_delete.go": "MsgDelete"}
CACHE_BIN = Path.home() / ".cache" / "cheaplm" / "bin"


class ServerUnavailable(Exception):
    """No server binary here and none can be built; the message says why in one line."""


@dataclass
class Binary:
    kind: str  # "ferretdb" or "mongod"
    path: str


def _version(path: str | None) -> str | None:
    """The first line of `path --version`, or None if it is not a working binary."""
    if not path or not os.access(path, os.X_OK):
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip().splitlines() or [""])[0] if done.returncode == 0 else None


def find(log=print) -> Binary | None:
    """The first usable server binary: a FerretDB built by this script (on PATH or in the
    cache), else mongod on PATH. Any other FerretDB 1.x loses concurrent updates (see
    ATOMIC_WRITES), so it is passed over with a note."""
    for path in (shutil.which("ferretdb"), str(CACHE_BIN / "ferretdb")):
        version = _version(path)
        if version and version.endswith(BUILD_VERSION):
            return Binary("ferretdb", path)
        if version:
            log(f"ferretdb: not using {path} ({version}): a FerretDB not built by tools/ferretdb.py "
                f"loses concurrent updates of one document", flush=True)
    mongod = shutil.which("mongod")
    return Binary("mongod", mongod) if _version(mongod) else None


def _patch(tree: Path) -> None:
    """Write the version file release builds generate and make single-document writes atomic."""
    (tree / "build" / "version" / "version.txt").write_text(BUILD_VERSION + "\n")
    handler = tree / "internal" / "handler"
    (handler / "cheaplm_atomic_writes.go").write_text(ATOMIC_WRITES)
    for name, command in PATCHED_COMMANDS.items():
        source = (handler / name).read_text()
        head = f"func (h *Handler) {command}(connCtx context.Context, msg *wire.OpMsg) (*wire.OpMsg, error) {{\n"
        if source.count(head) != 1:
            raise ServerUnavailable(f"cannot patch {name}: {command} is not where FerretDB "
                                    f"{FERRETDB_VERSION} has it")
        (handler / name).write_text(source.replace(
            head, head + "\treadModifyWrite.Lock()\n\tdefer readModifyWrite.Unlock()\n\n"))


def build(log=print) -> Binary:
    """Build FerretDB into the cache with the Go toolchain. Raises ServerUnavailable.

    Built from the released module's own sources and go.sum: `go install
    …/cmd/ferretdb@v1.24.2` makes a binary that panics at start (it requires
    build/version/version.txt, which release builds generate), so the module is copied
    out of the module cache, that file written and the atomic-writes patch applied.
    """
    go = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None)
    if go is None:
        raise ServerUnavailable("no Go toolchain to build FerretDB with")
    env = {**os.environ, "GOFLAGS": "-buildvcs=false"}
    started = time.monotonic()
    log(f"ferretdb: building FerretDB {FERRETDB_VERSION} with {go} into {CACHE_BIN} "
        f"(a few minutes the first time; cached afterwards)", flush=True)
    log("ferretdb: downloading the module and its dependencies…", flush=True)
    got = subprocess.run([go, "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"],
                         capture_output=True, text=True, env=env)
    try:
        source = json.loads(got.stdout)["Dir"]
    except (ValueError, KeyError):
        tail = (got.stderr or got.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServerUnavailable(f"go mod download {FERRETDB_MODULE}@{FERRETDB_VERSION} failed: {tail[0]}") from None
    CACHE_BIN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cheaplm-ferretdb-src-") as tmp:
        tree = Path(tmp) / "FerretDB"
        shutil.copytree(source, tree)
        for path in tree.rglob("*"):  # the module cache is read-only
            path.chmod(path.stat().st_mode | 0o200)
        _patch(tree)
        target = CACHE_BIN / "ferretdb"
        partial = CACHE_BIN / f".ferretdb.{os.getpid()}"
        log("ferretdb: compiling (go build ./cmd/ferretdb)…", flush=True)
        done = subprocess.run([go, "build", "-o", str(partial), "./cmd/ferretdb"], cwd=tree, env=env)
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise ServerUnavailable(f"go build of FerretDB {FERRETDB_VERSION} failed (exit {done.returncode})")
        partial.replace(target)
    if not _version(str(target)):
        raise ServerUnavailable(f"the FerretDB just built at {target} does not start")
    log(f"ferretdb: built {target} in {time.monotonic() - started:.0f} s", flush=True)
    return Binary("ferretdb", str(target))


def find_or_build(log=print) -> Binary:
    """A working binary, building FerretDB if there is none. Raises ServerUnavailable."""
    return find(log) or build(log)


def _die_with_parent() -> None:
    """In the child before exec: on Linux, get SIGTERM when the process that started the
    server dies, however it dies (so no server outlives a killed test run)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind this process like Ctrl-C does, so `with Server(...)` stops it."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int) -> bool:
    """True once the server answers a wire-protocol `ping` (an OP_MSG) on the port."""
    body = b"\x10ping\x00" + struct.pack("<i", 1) + b"\x02$db\x00" + struct.pack("<i", 6) + b"admin\x00"
    doc = struct.pack("<i", len(body) + 5) + body + b"\x00"
    payload = struct.pack("<I", 0) + b"\x00" + doc
    message = struct.pack("<iiii", 16 + len(payload), 1, 0, 2013) + payload
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(message)
            header = s.recv(16)
            return len(header) == 16 and struct.unpack("<iiii", header)[3] == 2013
    except OSError:
        return False


class Server:
    """One running server on a free 127.0.0.1 port with a throwaway data directory."""

    def __init__(self, binary: Binary) -> None:
        self.binary = binary
        self.port = _free_port()
        self.data = Path(tempfile.mkdtemp(prefix=f"cheaplm-{binary.kind}-"))
        self.log_path = self.data / "server.log"
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        if self.binary.kind == "mongod":
            db = self.data / "db"
            db.mkdir(exist_ok=True)
            return [self.binary.path, "--dbpath", str(db), "--port", str(self.port), "--bind_ip", "127.0.0.1",
                    "--quiet"]
        db = self.data / "sqlite"
        db.mkdir(exist_ok=True)
        # debug-addr "-": no metrics/probe listener (a fixed port would collide between runs).
        # synchronous(normal): in SQLite's WAL mode a commit survives the server being
        # killed, only not a power cut; twice the writes per second of the default (full).
        return [self.binary.path, "--handler=sqlite", f"--sqlite-url=file:{db}/?_pragma=synchronous(normal)",
                f"--listen-addr=127.0.0.1:{self.port}", "--telemetry=disable", "--debug-addr=-",
                f"--state-dir={self.data}", "--log-level=warn"]

    def start(self, timeout: float = 60) -> "Server":
        """Start the server and return once it answers a ping; raises ServerUnavailable."""
        log = self.log_path.open("wb")
        # Its own session: Ctrl-C reaches this process, which stops the server in order.
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if _ping(self.port):
                return self
            time.sleep(0.1)
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        self.stop()
        raise ServerUnavailable(f"{self.binary.kind} did not start on port {self.port}: {' | '.join(tail)}")

    def halt(self) -> None:
        """Kill the server at once (an outage, not a clean shutdown) but keep its port and
        data: `start()` brings the same one back."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and delete its data."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data, ignore_errors=True)

    def __enter__(self) -> "Server":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    stop_on_sigterm()
    try:
        if command == "build":
            print(find_or_build().path)
            return 0
        if command == "run" and rest:
            if rest[0] == "--":
                rest = rest[1:]
            with Server(find_or_build()) as server:
                print(f"ferretdb: {server.binary.kind} at {server.uri}", flush=True)
                env = {**os.environ, "TEST_MONGODB_URI": server.uri}
                return subprocess.run(rest, env=env).returncode
        if command == "serve":
            with Server(find_or_build()) as server:
                print(f"{server.binary.kind} listening: TEST_MONGODB_URI={server.uri} (Ctrl-C stops it)", flush=True)
                try:
                    server.process.wait()
                except KeyboardInterrupt:
                    pass
                return 0
    except ServerUnavailable as exc:
        print(f"ferretdb: {exc}", file=sys.stderr)
        return 1
    print(__doc__.strip().splitlines()[0], "\n" + "\n".join(__doc__.splitlines()[2:5]), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
