"""Site settings an admin changes at run time (`site_settings` collection, written only
here): who may sign up, and the credits a new account gets.

    {_id: "signup", mode: "open" | "closed" | "invite", credits: micro, invite_code: str}

Until an admin saves them, SIGNUP_CREDITS applies and sign-up is open.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from services.core.errors import InvalidRequest
from services.core.money import MICRO, to_micro, to_micro_checked

SIGNUP_MODES = ("open", "closed", "invite")
MAX_SIGNUP_CREDITS = 1_000_000


@dataclass
class SiteSettingsService:
    db: object
    default_signup_credits: float = 0.0  # Settings.signup_credits

    async def signup(self) -> dict:
        """{"mode", "credits" (micro), "invite_code"} in force now."""
        doc = await self.db.site_settings.find_one({"_id": "signup"}) or {}
        return {"mode": doc.get("mode", "open"),
                "credits": doc.get("credits", to_micro(self.default_signup_credits)),
                "invite_code": doc.get("invite_code", "")}

    async def set_signup(self, *, mode: object, credits: object, invite_code: object = "") -> tuple[dict, dict]:
        """Save the sign-up settings: (before, after). Raises InvalidRequest naming the field."""
        if mode not in SIGNUP_MODES:
            raise InvalidRequest("mode: one of open, closed, invite", param="mode")
        try:
            micro = to_micro_checked(credits, limit=MAX_SIGNUP_CREDITS)
        except ValueError:
            raise InvalidRequest(f"credits: a number from 0 to {MAX_SIGNUP_CREDITS}", param="credits") from None
        if micro < 0:
            raise InvalidRequest("credits: must not be negative", param="credits")
        invite_code = invite_code or ""
        if not isinstance(invite_code, str) or len(invite_code) > 100:
            raise InvalidRequest("invite_code: text of at most 100 characters", param="invite_code")
        if mode == "invite" and len(invite_code.strip()) < 6:
            raise InvalidRequest("invite_code: invite-only sign-up needs a code of 6+ characters",
                                 param="invite_code")
        before = await self.signup()
        after = {"mode": mode, "credits": micro, "invite_code": invite_code.strip()}
        await self.db.site_settings.update_one({"_id": "signup"}, {"$set": after}, upsert=True)
        return before, after

    @staticmethod
    def invite_matches(settings: dict, given: str) -> bool:
        code = settings.get("invite_code") or ""
        return bool(code) and hmac.compare_digest(code.encode(), (given or "").strip().encode())

    @staticmethod
    def credits_text(micro: int) -> float:
        return micro / MICRO
