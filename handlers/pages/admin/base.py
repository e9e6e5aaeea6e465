"""The admin console's page base: signed-in admins only, every change audited."""
from __future__ import annotations

from handlers.base import PageHandler
from services.core.errors import PermissionDenied


class AdminPageHandler(PageHandler):
    """A page under /admin. Handlers decorate get/post with @tornado.web.authenticated
    (anonymous browsers go to the log-in page); a signed-in non-admin gets the 403 page."""

    async def prepare(self) -> None:
        await super().prepare()
        user = self.current_user
        if user is not None and user.get("role") != "admin":
            raise PermissionDenied("This page is for administrators.")

    @property
    def actor(self) -> str:
        return self.current_user["username"]

    async def audit(self, action: str, target: str | None = None, *, before: dict | None = None,
                    after: dict | None = None) -> None:
        await self.services.audit.record(self.actor, action, target, before=before, after=after)

    def render_admin(self, template: str, status: int = 200, **context) -> None:
        self.render_page(f"admin/{template}", status=status, section=template.split(".")[0], **context)
