"""How long the website's pages take for a heavy account (300 keys, 20,000 usage records).

Runs the gateway in this process on the embedded store, signs up through the site,
seeds the account (bench/heavy_account.py), then fetches each page `--renders` times and
prints a Markdown table: p50 / p95 / max server time per page (the handler's own time,
as Tornado measures it, so the HTTP client is not counted) and the page size. Twice: with
the records made by every key and model in turn (the worst case: about one daily rollup
per record) and by 10 keys and 2 models (most keys idle, as in practice).

    .venv/bin/python bench/pages.py [--renders 20] [--keys 300] [--records 20000]

`bench/run.py` runs it at the end and adds the table to its report.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import app as app_module  # noqa: E402
from bench import heavy_account  # noqa: E402
from bench.procs import free_port  # noqa: E402
from services.config import Settings  # noqa: E402

PAGES = ["/docs", "/dashboard", "/dashboard?page=40", "/keys", "/keys?page=6", "/topup", "/account"]


class _Timings:
    """Tornado's `log_function`: collects each request's server time (ms), by URI."""

    def __init__(self) -> None:
        self.by_uri: dict[str, list[float]] = {}

    def __call__(self, handler) -> None:
        request = handler.request
        self.by_uri.setdefault(request.uri, []).append(1000.0 * request.request_time())


async def measure(renders: int, keys: int, records: int, active_keys: int | None) -> list[str]:
    port = free_port()
    settings = Settings.from_env({"MONGODB_URI": "memory://", "PORT": str(port), "HOST": "127.0.0.1",
                                  "LOG_LEVEL": "WARNING", "COOKIE_SECRET": secrets.token_hex(16)})
    timings = _Timings()
    gateway = app_module.Gateway(settings)
    await gateway.start()
    gateway.app.settings["log_function"] = timings
    services = gateway.services
    sizes: dict[str, int] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"Accept": "text/html"},
                                     timeout=60) as http:
            await http.get("/login")
            password, username = "bench-password-1", f"heavy{secrets.token_hex(3)}"
            r = await http.post("/signup", data={"_xsrf": http.cookies["_xsrf"], "username": username,
                                                 "email": f"{username}@example.com", "password": password,
                                                 "confirm": password})
            assert r.status_code == 302, r.text[:300]
            user = await services.users.by_username(username)
            await heavy_account.seed(services.db, user["_id"], [m.id for m in services.catalog.models()],
                                     keys=keys, records=records, active_keys=active_keys)
            for path in PAGES:
                await http.get(path)  # warm the template cache
                timings.by_uri.pop(path, None)
                for _ in range(renders):
                    r = await http.get(path)
                    assert r.status_code == 200, (path, r.status_code)
                sizes[path] = len(r.content)
    finally:
        await gateway.stop()
    rollups = await services.db.usage_daily.count_documents({"user_id": user["_id"]})
    spread = (f"made by {active_keys} of the keys with 2 models" if active_keys
              else "made by every key and model in turn")
    lines = [f"**{keys:,} keys, {records:,} usage records {spread} ({rollups:,} daily rollups)**; embedded "
             f"store; each page fetched {renders} times after one warm-up; server time as Tornado measures it.",
             "", "| page | p50 ms | p95 ms | max ms | size |", "|---|---|---|---|---|"]
    for path in PAGES:
        values = sorted(timings.by_uri.get(path, []))
        if not values:
            continue
        p50, p95 = values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.95))]
        lines.append(f"| `{path}` | {p50:.1f} | {p95:.1f} | {values[-1]:.1f} | {sizes[path] / 1024:.0f} KB |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--keys", type=int, default=heavy_account.KEYS)
    parser.add_argument("--records", type=int, default=heavy_account.RECORDS)
    parser.add_argument("--active-keys", type=int, default=10,
                        help="keys that made the records in the second account (the first: all)")
    args = parser.parse_args()
    os.chdir(ROOT)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("services.db").setLevel(logging.ERROR)  # the "not persisted" warning
    for active in (None, args.active_keys):
        print("\n".join(asyncio.run(measure(args.renders, args.keys, args.records, active))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
