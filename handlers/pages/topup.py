"""Top-up page: redeem a code, and the ledger of credit movements with running balance."""
from __future__ import annotations

import tornado.web

from handlers.base import PageHandler
from services.core.errors import InvalidRequest
from services.core.money import fmt_credits

PAGE_SIZE = 25
KIND_LABELS = {"topup": "Top-up", "usage": "API usage", "signup": "Welcome credits", "adjustment": "Adjustment"}


class TopupPageHandler(PageHandler):
    """GET: balance, the redeem form and the ledger; POST: redeem a code (once only)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        await self.show()

    async def show(self, *, code: str = "", errors: dict | None = None, status: int = 200) -> None:
        user, page = self.current_user, self.page_argument()
        entries = await self.services.billing.ledger(user["_id"], limit=PAGE_SIZE + 1, skip=(page - 1) * PAGE_SIZE)
        for e in entries:
            e["label"] = KIND_LABELS.get(e.get("kind"), (e.get("kind") or "").capitalize())
        # Shown only before a balance change in this request: the user document read for it is current.
        self.render_page("topup.html", status=status, credits=user["balance"] + user["held"], code=code,
                         errors=errors or {}, entries=entries[:PAGE_SIZE], page=page,
                         more=len(entries) > PAGE_SIZE)

    @tornado.web.authenticated
    async def post(self) -> None:
        code = self.get_argument("code", "")[:64]
        if not code:
            return await self.show(errors={"code": "Enter a top-up code."}, status=400)
        try:
            amount, credits = await self.services.topup.redeem(self.current_user["_id"], code)
        except InvalidRequest as exc:
            return await self.show(code=code, errors={"code": exc.message}, status=400)
        self.flash(f"Added {fmt_credits(amount)} credits. Your balance is now {fmt_credits(credits)} credits.")
        self.redirect("/topup")


routes = [
    (r"/topup/?", TopupPageHandler),
]
