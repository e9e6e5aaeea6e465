"""Public pages. `/` answers API probes (HEAD, non-browser GET) with 200 and browsers with the docs."""
from __future__ import annotations

from handlers.base import PageHandler


def wants_html(handler) -> bool:
    return "text/html" in handler.request.headers.get("Accept", "")


class HomePageHandler(PageHandler):
    def head(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish()

    async def get(self) -> None:
        if not wants_html(self):
            self.set_header("Content-Type", "application/json")
            self.finish({"status": "ok", "service": "CheapLM gateway", "docs": "/docs"})
            return
        self.render_page("home.html", models=self.services.catalog.models())


class ProbePageHandler(PageHandler):
    """HEAD/GET /api/hello: Claude Code's pre-connect probe."""

    def head(self) -> None:
        self.finish()

    def get(self) -> None:
        self.finish({"status": "ok"})


routes = [
    (r"/", HomePageHandler),
    (r"/(?:api/)?(?:v1/)?api/hello/?", ProbePageHandler),
]
