"""The types shared across packages: who is calling, which model, how many tokens."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.core.money import cost_micro, fmt_credits, split_cost_micro, to_micro

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the authenticated key and its user, as of the lookup."""

    user_id: object
    username: str
    key_id: object
    key_name: str
    credit_cap: int | None = None          # micro-credits the key may spend in total
    allowed_models: tuple[str, ...] = ()   # empty = all
    expires_at: dt.datetime | None = None
    rpm: int = 0                           # requests per minute; 0 = the gateway default


RATE_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


@dataclass(frozen=True)
class Rates:
    """Separate prices (micro-credits per 1K tokens) for a model billed by kind of token."""

    input: int
    output: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int

    @classmethod
    def from_doc(cls, doc: dict) -> "Rates":
        return cls(**{name: to_micro(doc[name]) for name in RATE_FIELDS})

    def as_credits(self) -> dict:
        return {name: fmt_credits(getattr(self, name)) for name in RATE_FIELDS}


@dataclass(frozen=True)
class Model:
    """One catalog entry as the gateway uses it."""

    id: str
    upstream_id: str
    display_name: str
    max_input: int
    max_output: int
    price_per_1k_micro: int
    features: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    adaptive_thinking: bool = False
    created: int = 0
    max_input_1m: int = 0   # input limit with the context-1m beta (0: the upstream has no such variant)
    rates: Rates | None = None  # None: one price for every token (price_per_1k_micro)

    def cost(self, usage: "Usage") -> int:
        """What `usage` costs in micro-credits under this model's rule in force.

        The default: total_tokens / 1000 × cost_per_1k. With split rates: each kind of token
        at its own rate; cache writes split into 5-minute and 1-hour writes by the upstream's
        `cache_creation` breakdown, any write it does not break down counted as 5-minute
        (the upstream's default lifetime)."""
        if self.rates is None:
            return cost_micro(usage.total, self.price_per_1k_micro)
        r = self.rates
        one_hour = min(usage.cache_creation_1h_input_tokens, usage.cache_creation_input_tokens)
        five_min = usage.cache_creation_input_tokens - one_hour
        return split_cost_micro([(usage.input_tokens, r.input), (usage.output_tokens, r.output),
                                 (five_min, r.cache_write_5m), (one_hour, r.cache_write_1h),
                                 (usage.cache_read_input_tokens, r.cache_read)])

    def hold_cost(self, input_tokens: int, output_tokens: int) -> int:
        """The most `input_tokens` in and `output_tokens` out can cost (each input token at
        the dearest input-side rate)."""
        if self.rates is None:
            return cost_micro(input_tokens + output_tokens, self.price_per_1k_micro)
        r = self.rates
        dearest_in = max(r.input, r.cache_write_5m, r.cache_write_1h, r.cache_read)
        return split_cost_micro([(input_tokens, dearest_in), (output_tokens, r.output)])

    @property
    def price_rule(self) -> str:
        """The rule in force, as the docs and dashboard show it."""
        if self.rates is None:
            return f"{fmt_credits(self.price_per_1k_micro)} per 1K tokens"
        c = self.rates.as_credits()
        return (f"input {c['input']} · output {c['output']} · cache write {c['cache_write_5m']} (5 min) / "
                f"{c['cache_write_1h']} (1 h) · cache read {c['cache_read']} per 1K tokens")

    @property
    def supports_thinking(self) -> bool:
        return "thinking" in self.features

    @classmethod
    def from_doc(cls, doc: dict) -> "Model":
        return cls(id=doc["_id"], upstream_id=doc.get("upstream_id") or doc["_id"],
                   display_name=doc.get("display_name") or doc["_id"],
                   max_input=int(doc["max_input"]), max_output=int(doc["max_output"]),
                   price_per_1k_micro=to_micro(doc["cost_per_1k"]),
                   features=tuple(doc.get("features", ())), aliases=tuple(doc.get("aliases", ())),
                   adaptive_thinking=bool(doc.get("adaptive_thinking")),
                   created=int(doc.get("created", 0)), max_input_1m=int(doc.get("max_input_1m") or 0),
                   rates=Rates.from_doc(doc["rates"]) if doc.get("rates") else None)


@dataclass
class Usage:
    """Token counts reported by the upstream (latest value of each counter, never summed)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    # The breakdown of cache_creation_input_tokens by lifetime (`usage.cache_creation`).
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0

    @property
    def total(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_creation_input_tokens
                + self.cache_read_input_tokens)

    def update(self, counters: dict | None) -> None:
        """Take every integer counter present in an Anthropic `usage` object."""
        if not counters:
            return
        for name in TOKEN_FIELDS:
            value = counters.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, value)
        breakdown = counters.get("cache_creation")
        if isinstance(breakdown, dict):
            for name, source in (("cache_creation_5m_input_tokens", "ephemeral_5m_input_tokens"),
                                 ("cache_creation_1h_input_tokens", "ephemeral_1h_input_tokens")):
                value = breakdown.get(source)
                if isinstance(value, int) and not isinstance(value, bool):
                    setattr(self, name, value)

    def as_dict(self) -> dict:
        """The four counters, plus the cache-write breakdown when the upstream gave one."""
        out = {name: getattr(self, name) for name in TOKEN_FIELDS}
        if self.cache_creation_5m_input_tokens or self.cache_creation_1h_input_tokens:
            out["cache_creation_5m_input_tokens"] = self.cache_creation_5m_input_tokens
            out["cache_creation_1h_input_tokens"] = self.cache_creation_1h_input_tokens
        return out
