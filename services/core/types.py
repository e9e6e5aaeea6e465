"""The types shared across packages: who is calling, which model, how many tokens."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.core.money import to_micro

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
                   created=int(doc.get("created", 0)), max_input_1m=int(doc.get("max_input_1m") or 0))


@dataclass
class Usage:
    """Token counts reported by the upstream (latest value of each counter, never summed)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

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

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in TOKEN_FIELDS}
