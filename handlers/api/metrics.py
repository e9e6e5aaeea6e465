"""GET /metrics: the process's Prometheus metrics, for a bearer of METRICS_TOKEN only."""
from __future__ import annotations

import hmac

from handlers.base import ApiHandler
from services.core.errors import AuthenticationFailed, NotFound
from services.gateway.metrics import CONTENT_TYPE_LATEST


class MetricsApiHandler(ApiHandler):
    """404 while METRICS_TOKEN is unset (not public by default), 401 without the token."""

    async def check_caller(self) -> None:
        token = self.services.settings.metrics_token
        if not token:
            raise NotFound("Unknown endpoint: GET /metrics")
        if not hmac.compare_digest((self.bearer_token() or "").encode(), token.encode()):
            raise AuthenticationFailed("GET /metrics needs Authorization: Bearer <METRICS_TOKEN>.")

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.services.metrics.render())


routes = [(r"/metrics", MetricsApiHandler)]
