"""Sign-up, log-in and log-out pages (session cookie, throttled log-ins, safe `next=`)."""
from __future__ import annotations

from handlers.base import PageHandler, safe_next
from services.accounts.users import EMAIL_RE, PASSWORD_MAX, PASSWORD_RULES, USERNAME_RE, check_password_rules
from services.core.errors import GatewayError, InvalidRequest
from services.core.money import fmt_credits

USERNAME_HELP = "3–32 characters: letters, digits, “_”, “.” or “-”."
FIELD_MAX = 256  # longest username/email we even look at


INVALID_EMAIL = "Enter a valid email address, like name@example.com."


def email_error(email: str, *, if_empty: str = "Enter your email address.") -> str | None:
    """What is wrong with an email address typed into a form (None: nothing)."""
    if not email:
        return if_empty
    if len(email) > FIELD_MAX or not EMAIL_RE.match(email):
        return INVALID_EMAIL
    return None


def signup_errors(username: str, email: str, password: str, confirm: str) -> dict[str, str]:
    """Every problem with a sign-up form at once, keyed by field name."""
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = "Choose a username."
    elif not USERNAME_RE.match(username):
        errors["username"] = f"Username must be {USERNAME_HELP}"
    if problem := email_error(email):
        errors["email"] = problem
    try:
        check_password_rules(password)
    except InvalidRequest as exc:
        errors["password"] = exc.message
    if "password" not in errors and password != confirm:
        errors["confirm"] = "The two passwords do not match."
    return errors


class SignupPageHandler(PageHandler):
    """GET: the form; POST: create the account, grant SIGNUP_CREDITS, sign in, redirect."""

    async def get(self) -> None:
        if self.current_user is not None:
            self.redirect(safe_next(self.get_argument("next", None)))
            return
        self.signup_settings = await self.services.site.signup()
        self.show(form={})

    def show(self, *, form: dict, errors: dict | None = None, status: int = 200) -> None:
        site = self.signup_settings  # the admin's sign-up settings (services/admin/site.py)
        self.render_page("signup.html", status=status, form=form, errors=errors or {},
                         next=safe_next(self.get_argument("next", None)), rules=PASSWORD_RULES,
                         username_help=USERNAME_HELP, password_max=PASSWORD_MAX,
                         signup_credits=fmt_credits(site["credits"]), signup_mode=site["mode"])

    async def post(self) -> None:
        self.signup_settings = await self.services.site.signup()
        form = {"username": self.get_argument("username", ""), "email": self.get_argument("email", "")}
        password = self.get_argument("password", "", strip=False)
        errors = signup_errors(form["username"], form["email"], password,
                               self.get_argument("confirm", "", strip=False))
        if errors:
            return self.show(form=form, errors=errors, status=400)
        try:  # the address counts X-Forwarded-For only from TRUSTED_PROXIES
            user = await self.services.signin.sign_up(form["username"], password, email=form["email"],
                                                      ip=self.request.remote_ip, invite=self.get_argument("invite", ""))
        except GatewayError as exc:
            return self.show(form=form, errors={exc.param or "form": exc.message}, status=exc.status)
        await self.login(user)
        self.redirect(safe_next(self.get_argument("next", None)))


class LoginPageHandler(PageHandler):
    """GET: the form; POST: check the password (throttled per account and address, per
    account and per address), sign in."""

    def get(self) -> None:
        if self.current_user is not None:
            self.redirect(safe_next(self.get_argument("next", None)))
            return
        self.show(username="")

    def show(self, *, username: str, errors: dict | None = None, status: int = 200) -> None:
        self.render_page("login.html", status=status, username=username, errors=errors or {},
                         next=safe_next(self.get_argument("next", None)),
                         signup_mode=self.signup_settings["mode"])

    async def prepare(self) -> None:
        await super().prepare()
        self.signup_settings = await self.services.site.signup()

    async def post(self) -> None:
        username = self.get_argument("username", "")[:FIELD_MAX]
        password = self.get_argument("password", "", strip=False)
        if not username or not password:
            errors = {k: f"Enter your {k}." for k, v in (("username", username), ("password", password)) if not v}
            return self.show(username=username, errors=errors, status=400)
        try:
            user = await self.services.signin.log_in(username, password, self.request.remote_ip)
        except GatewayError as exc:
            for name, value in exc.headers.items():
                self.set_header(name, value)
            return self.show(username=username, errors={"form": exc.message}, status=exc.status)
        await self.login(user)
        self.redirect(safe_next(self.get_argument("next", None)))


class LogoutPageHandler(PageHandler):
    """GET: a one-button confirmation (links cannot log you out); POST: end the session
    (server-side: a copy of the cookie opens nothing afterwards)."""

    def get(self) -> None:
        if self.current_user is None:
            self.redirect("/")
            return
        self.render_page("logout.html")

    async def post(self) -> None:
        await self.logout()
        self.flash("You are signed out.")
        self.redirect("/")


routes = [
    (r"/signup/?", SignupPageHandler),
    (r"/login/?", LoginPageHandler),
    (r"/logout/?", LogoutPageHandler),
]
