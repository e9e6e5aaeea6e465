"""Account page: change email, change password (current one required; other sessions end),
log out everywhere."""
from __future__ import annotations

import tornado.web

from handlers.base import PageHandler
from handlers.pages.auth import FIELD_MAX, INVALID_EMAIL, email_error
from services.accounts.users import PASSWORD_MAX, PASSWORD_RULES
from services.core.errors import GatewayError, InvalidRequest


class AccountPageHandler(PageHandler):
    """GET: the forms; POST action=email|password|logout_everywhere."""

    @tornado.web.authenticated
    def get(self) -> None:
        self.show()

    def show(self, *, errors: dict | None = None, email: str | None = None, status: int = 200) -> None:
        self.render_page("account.html", status=status, errors=errors or {}, rules=PASSWORD_RULES,
                         password_max=PASSWORD_MAX,
                         email=self.current_user.get("email") or "" if email is None else email)

    @tornado.web.authenticated
    async def post(self) -> None:
        action = self.get_argument("action", "")
        if action == "email":
            await self.change_email()
        elif action == "password":
            await self.change_password()
        elif action == "logout_everywhere":
            await self.logout(everywhere=True)
            self.flash("You are signed out on every browser and device.")
            self.redirect("/")
        else:
            raise InvalidRequest("Unknown action.")

    async def change_email(self) -> None:
        email = self.get_argument("email", "")
        problem = email_error(email, if_empty=INVALID_EMAIL)
        if problem:
            return self.show(errors={"email": problem}, email=email[:FIELD_MAX], status=400)
        await self.services.users.set_email(self.current_user["_id"], email)
        self.flash("Email address saved.")
        self.redirect("/account")

    async def change_password(self) -> None:
        new = self.get_argument("new_password", "", strip=False)
        if new != self.get_argument("confirm", "", strip=False):
            return self.show(errors={"confirm": "The two new passwords do not match."}, status=400)
        try:
            await self.services.signin.change_password(
                self.current_user, self.get_argument("current_password", "", strip=False), new,
                ip=self.request.remote_ip, keep_session=self.session_token)
        except GatewayError as exc:
            field = {"password": "new_password", None: "current_password"}.get(exc.param, exc.param)
            return self.show(errors={field: exc.message}, status=exc.status)
        self.flash("Password changed. Any other signed-in browsers were signed out.")
        self.redirect("/account")

routes = [
    (r"/account/?", AccountPageHandler),
]
