"""Liveness and readiness, as a load balancer or orchestrator asks for them."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from services.core.errors import UpstreamError


@dataclass
class HealthService:
    """Answers "is this process ready to serve": its database answers and an upstream is usable."""

    db: object
    upstream: object  # UpstreamService
    timeout: float = 2.0

    async def readiness(self) -> dict[str, str]:
        """{"database": "ok" | <why not>, "upstream": "ok" | <why not>}; never raises."""
        checks = {"database": "ok", "upstream": "ok"}
        try:
            await asyncio.wait_for(self.db.command("ping"), self.timeout)
        except asyncio.TimeoutError:
            checks["database"] = f"no answer within {self.timeout:g} s"
        except Exception as exc:  # any driver error means "not ready", with its kind
            checks["database"] = f"unreachable ({type(exc).__name__})"
        try:
            self.upstream.pick()
        except UpstreamError as exc:
            checks["upstream"] = exc.message
        return checks
