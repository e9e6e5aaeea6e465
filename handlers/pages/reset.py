"""One-time password-reset links an admin makes for a user (/reset/{token})."""
from __future__ import annotations

from handlers.base import PageHandler
from services.accounts.users import PASSWORD_MAX, PASSWORD_RULES
from services.core.errors import InvalidRequest, NotFound

DEAD_LINK = "This reset link has expired or was already used. Ask your administrator for a new one."


class ResetPageHandler(PageHandler):
    """GET: the new-password form; POST: set it (the link then opens nothing) and sign in."""

    async def get(self, token: str) -> None:
        if await self.services.users.reset_user(token) is None:
            raise NotFound(DEAD_LINK)
        self.show(token)

    def show(self, token: str, *, errors: dict | None = None, status: int = 200) -> None:
        self.render_page("reset.html", status=status, token=token, errors=errors or {}, rules=PASSWORD_RULES,
                         password_max=PASSWORD_MAX)

    async def post(self, token: str) -> None:
        password = self.get_argument("password", "", strip=False)
        if password != self.get_argument("confirm", "", strip=False):
            return self.show(token, errors={"confirm": "The two passwords differ."}, status=400)
        try:
            user = await self.services.users.use_reset(token, password)
        except InvalidRequest as exc:
            return self.show(token, errors={"password": exc.message}, status=400)
        if user is None:
            raise NotFound(DEAD_LINK)
        await self.login(user)
        self.flash("Your new password is set.")
        self.redirect("/dashboard")


routes = [(r"/reset/([A-Za-z0-9_-]{20,100})/?", ResetPageHandler)]
