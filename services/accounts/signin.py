"""Signing in, signing up and changing a password: the throttle and the account together.

Each attempt is reserved with the throttle before the password is checked (or the account
made), so parallel guesses cannot outrun the limits; the outcome then releases or keeps the
reservation. The page handlers only read the form and render what these return or raise.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.accounts.login_throttle import ThrottleService
from services.accounts.users import PASSWORD_MAX, UserService
from services.core.errors import GatewayError, InvalidRequest

WRONG_CREDENTIALS = "Wrong username or password."


@dataclass
class SignInService:
    """Log-ins, sign-ups and password changes, throttled per account and address."""

    users: UserService
    throttle: ThrottleService
    billing: object  # BillingService, for the sign-up credits
    signup_credits: float = 0.0

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

    async def sign_up(self, username: str, password: str, *, email: str, ip: str) -> dict:
        """Create the account (and grant SIGNUP_CREDITS); returns the user. Raises RateLimited
        (too many sign-ups from this address) or the account's InvalidRequest / Conflict."""
        await self.throttle.begin_signup(ip)
        try:
            user = await self.users.create(username, password, email=email)
        except GatewayError:
            await self.throttle.signup_failed(ip)
            raise
        if self.signup_credits > 0:
            await self.billing.adjust(user["_id"], self.signup_credits, kind="signup", note="Welcome credits")
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
