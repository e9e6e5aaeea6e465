"""GET /healthz (the process is up) and GET /readyz (it can serve): cheap, unauthenticated."""
from __future__ import annotations

from handlers.base import ApiHandler


class HealthzApiHandler(ApiHandler):
    """200 while the process runs; no database or upstream call."""

    async def check_caller(self) -> None:
        """Open to anyone (probes send no credentials)."""

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.write_json({"status": "ok"})


class ReadyzApiHandler(ApiHandler):
    """200 when the database answers and an upstream is usable, else 503 saying which is not."""

    check_caller = HealthzApiHandler.check_caller

    async def get(self) -> None:
        checks = await self.services.health.readiness()
        ready = all(v == "ok" for v in checks.values())
        self.set_header("Cache-Control", "no-store")
        self.write_json({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)


routes = [
    (r"/healthz", HealthzApiHandler),
    (r"/readyz", ReadyzApiHandler),
]
