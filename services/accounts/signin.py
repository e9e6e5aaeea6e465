"""Signing in, signing up and changing a password: the throttle and the account together.

Each attempt is reserved with the throttle before the password is checked (or the account
made), so parallel guesses cannot outrun the limits; the outcome then releases or keeps the
reservation. The page handlers only read the form and render what these return or raise.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.accounts.login_throttle import ThrottleService
from services.accounts.users import PASSWORD_MAX, UserService
from services.core.errors import GatewayError, InvalidRequest, PermissionDenied
from services.core.money import fmt_credits

WRONG_CREDENTIALS = "Wrong username or password."


@dataclass
class SignInService:
    """Log-ins, sign-ups and password changes, throttled per account and address."""

    users: UserService
    throttle: ThrottleService
    billing: object  # BillingService, for the sign-up credits
    site: object     # SiteSettingsService: the admin's sign-up mode, invite code and credits

    async def log_in(self, username: str, password: str, ip: str) -> dict:
        """The user whose password this is. Raises RateLimited (reserved attempts used up),
        InvalidRequest (wrong username or password, or a frozen account)."""
        attempt = await self.throttle.begin_login(username, ip)
        user = None
        if len(password) <= PASSWORD_MAX:  # a longer one cannot be anyone's password
            user = await self.users.authenticate(username, password)
        if user is None or user.get("frozen"):
            await self.throttle.login_failed(attempt)
            raise InvalidRequest("This account is frozen." if user else WRONG_CREDENTIALS)
        await self.throttle.login_succeeded(attempt)
        return user

    async def sign_up(self, username: str, password: str, *, email: str, ip: str, invite: str = "") -> dict:
        """Create the account (and grant the sign-up credits in force); returns the user.

        Raises PermissionDenied (sign-up closed), InvalidRequest with param "invite" (invite-only
        and the code does not match), RateLimited (too many sign-ups from this address) or the
        account's InvalidRequest / Conflict."""
        site = await self.site.signup()
        if site["mode"] == "closed":
            raise PermissionDenied("Sign-up is closed. Ask an administrator for an account.")
        if site["mode"] == "invite" and not self.site.invite_matches(site, invite):
            raise InvalidRequest("Enter the invite code you were given.", param="invite")
        await self.throttle.begin_signup(ip)
        try:
            user = await self.users.create(username, password, email=email)
        except GatewayError:
            await self.throttle.signup_failed(ip)
            raise
        if site["credits"] > 0:
            await self.billing.adjust(user["_id"], fmt_credits(site["credits"]), kind="signup", note="Welcome credits")
        return user

    async def change_password(self, user: dict, current: str, new: str, *, ip: str,
                              keep_session: str | None) -> None:
        """Set a new password after checking the current one (a log-in attempt too: same
        throttle). Raises RateLimited, or InvalidRequest with `param` naming the field."""
        attempt = await self.throttle.begin_login(user["username"], ip)
        try:
            await self.users.change_password(user["_id"], current[:PASSWORD_MAX + 1], new, keep_session=keep_session)
        except InvalidRequest as exc:
            if exc.param == "current_password":
                await self.throttle.login_failed(attempt)
            else:  # the current password was right; only the new one was refused
                await self.throttle.login_succeeded(attempt)
            raise
        await self.throttle.login_succeeded(attempt)
