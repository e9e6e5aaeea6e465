"""Public pages: `/` (API probes get 200, browsers the docs), `/docs`, and the `/api/hello` probe."""
from __future__ import annotations

from dataclasses import dataclass

from handlers.base import PageHandler
from services.core.errors import GatewayError
from services.core.money import MICRO, cost_micro, fmt_credits
from services.core.types import Model

KEY_PLACEHOLDER = "sk-YOUR_KEY"
# Sample jobs for the pricing table: (task, tokens, which end of the price list).
COST_EXAMPLES = [("Short chat", 1_000, "cheapest"), ("Code review", 5_000, "middle"),
                 ("Complex analysis", 10_000, "priciest")]


def wants_html(handler) -> bool:
    return "text/html" in handler.request.headers.get("Accept", "")


def compact_number(n: int) -> str:
    """200000 → "200K", 1500000 → "1.5M" (token counts, chart ticks)."""
    for unit, size in (("M", 1_000_000), ("K", 1_000)):
        if abs(n) >= size:
            return f"{n / size:.1f}".removesuffix(".0") + unit
    return str(n)


@dataclass(frozen=True)
class ModelRow:
    """One model as the docs and dashboard show it (prices as exact strings)."""

    id: str
    display_name: str
    max_input: str
    max_output: str
    price: str
    price_micro: int
    tokens_per_credit: int
    features: tuple[str, ...]
    aliases: tuple[str, ...]
    split_rule: str = ""  # the separate rates in force, when the model has them

    @classmethod
    def of(cls, m: Model) -> "ModelRow":
        return cls(m.id, m.display_name, compact_number(m.max_input), compact_number(m.max_output),
                   fmt_credits(m.price_per_1k_micro), m.price_per_1k_micro,
                   MICRO * 1000 // m.price_per_1k_micro if m.price_per_1k_micro else 0,
                   tuple(f.capitalize() for f in m.features), m.aliases,
                   split_rule=m.price_rule if m.rates else "")


def pricing_groups(models: list[Model]) -> list[dict]:
    """Models grouped by price, dearest first: [{"names": "Claude Opus 4.6 / …", "price"}]."""
    groups: dict[int, list[str]] = {}
    for m in models:
        groups.setdefault(m.price_per_1k_micro, []).append(m.display_name)
    return [{"names": " / ".join(names), "price": fmt_credits(price)}
            for price, names in sorted(groups.items(), reverse=True)]


def cost_examples(models: list[Model]) -> list[dict]:
    """Worked examples priced from the live catalog."""
    if not models:
        return []
    by_price = sorted(models, key=lambda m: (m.price_per_1k_micro, m.id))
    pick = {"cheapest": by_price[0], "middle": by_price[len(by_price) // 2], "priciest": by_price[-1]}
    return [{"task": task, "model": pick[which].display_name, "tokens": tokens,
             "credits": fmt_credits(cost_micro(tokens, pick[which].price_per_1k_micro))}
            for task, tokens, which in COST_EXAMPLES]


class DocsPageHandler(PageHandler):
    """`/docs`: the product documentation with this gateway's URL and live prices."""

    template = "home.html"

    async def docs_context(self) -> dict:
        catalog = self.services.catalog
        models = catalog.models()
        example = "claude-sonnet-4"
        try:
            example_full = catalog.resolve(example).id
        except GatewayError:
            example = example_full = models[0].id if models else "claude-sonnet-4"
        key_hint, has_keys = KEY_PLACEHOLDER, False
        if self.current_user is not None:
            keys, _ = await self.services.keys.page_for_user(self.current_user["_id"], limit=1)
            if keys:
                key_hint, has_keys = keys[0]["prefix"], True
        return {"models": [ModelRow.of(m) for m in models], "pricing": pricing_groups(models),
                "examples": cost_examples(models), "example_model": example, "example_model_full": example_full,
                "top_model": models[0].id if models else example, "key": key_hint, "has_keys": has_keys,
                "api_base": self.base_url() + "/api/v1"}

    async def get(self) -> None:
        self.render_page(self.template, page="docs", **await self.docs_context())


class HomePageHandler(DocsPageHandler):
    """`/`: HEAD and non-browser GETs are API probes (200); browsers get the docs."""

    def head(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish()

    async def get(self) -> None:
        if not wants_html(self):
            self.set_header("Content-Type", "application/json")
            self.finish({"status": "ok", "service": "CheapLM gateway", "docs": "/docs"})
            return
        self.render_page(self.template, page="home", **await self.docs_context())


class ProbePageHandler(PageHandler):
    """HEAD/GET /api/hello: Claude Code's pre-connect probe."""

    def head(self) -> None:
        self.finish()

    def get(self) -> None:
        self.finish({"status": "ok"})


routes = [
    (r"/", HomePageHandler),
    (r"/docs/?", DocsPageHandler),
    (r"/(?:api/)?(?:v1/)?api/hello/?", ProbePageHandler),
]
