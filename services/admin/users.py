"""What an admin does to a user, each action with its audit record.

The /admin pages and the management API are twins: both call these, so an action and the
record of it cannot differ between them.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.billing.credits import parse_amount
from services.core.errors import InvalidRequest
from services.core.money import fmt_credits

REASON_MAX = 500
RPM_MAX = 1_000_000


def check_reason(reason: object) -> str:
    """The reason for a credit adjustment, stripped; raises InvalidRequest (param reason)."""
    if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX:
        raise InvalidRequest(f"reason: a short text (at most {REASON_MAX} characters) saying why is required",
                             param="reason")
    return reason.strip()


def check_rpm(rpm: object) -> int:
    """A per-user requests-per-minute limit; raises InvalidRequest (param rpm)."""
    if isinstance(rpm, bool) or not isinstance(rpm, int) or not 0 <= rpm <= RPM_MAX:
        raise InvalidRequest(f"rpm: must be an integer from 0 (the gateway default) to {RPM_MAX}", param="rpm")
    return rpm


@dataclass
class AdminUserActions:
    """Credits, freezing, role, password and rate limit of a user, as an admin changes them.
    Each method takes the acting admin (`actor`, as the audit trail names it) and the user
    document, and returns the user's new state."""

    users: object    # UserService
    billing: object  # BillingService
    keys: object     # KeyService (its cache forgets the user's keys after a change)
    audit: object    # AuditService

    async def adjust_credits(self, actor: str, user: dict, amount: object, reason: object) -> int:
        """Add (or, negative, remove) credits with a reason; returns the credits (micro)."""
        parse_amount(amount)  # a bad amount is named before a missing reason
        reason = check_reason(reason)
        before = user.get("balance", 0) + user.get("held", 0)
        credits = await self.billing.adjust(user["_id"], amount, note=reason)
        await self.audit.record(actor, "user.credits", user["username"], before={"credits": fmt_credits(before)},
                                after={"credits": fmt_credits(credits), "reason": reason})
        return credits

    async def set_frozen(self, actor: str, user: dict, frozen: bool) -> dict:
        doc = await self.users.set_frozen(user["_id"], frozen)
        self.keys.invalidate()
        await self.audit.record(actor, "user.freeze", user["username"], before={"frozen": user.get("frozen", False)},
                                after={"frozen": frozen})
        return doc

    async def set_role(self, actor: str, user: dict, role: object) -> dict:
        """Raises InvalidRequest for another role, Conflict for the last admin."""
        doc, before = await self.users.set_role(user["_id"], role)
        await self.audit.record(actor, "user.role", user["username"], before={"role": before},
                                after={"role": doc["role"]})
        return doc

    async def set_password(self, actor: str, user: dict, password: object) -> None:
        """Every session of the user ends; raises InvalidRequest for a password the rules refuse."""
        await self.users.set_password(user["_id"], password)
        await self.audit.record(actor, "user.password", user["username"])

    async def set_rpm(self, actor: str, user: dict, rpm: object) -> dict:
        rpm = check_rpm(rpm)
        doc = await self.users.set_rpm(user["_id"], rpm)
        self.keys.invalidate()
        await self.audit.record(actor, "user.rpm", user["username"], before={"rpm": user.get("rpm", 0)},
                                after={"rpm": rpm})
        return doc

    async def reset_link_token(self, actor: str, user: dict) -> str:
        """A one-time password-reset token (the link is the caller's to build)."""
        token = await self.users.create_reset(user["_id"])
        await self.audit.record(actor, "user.reset_link", user["username"])
        return token
