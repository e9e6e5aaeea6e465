"""Exact money: balances and prices are integer micro-credits (1 credit = 1,000,000)."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICRO = 1_000_000


def to_micro(credits: float | int | str | Decimal) -> int:
    """Credits (as a user types them) → integer micro-credits, rounded half-up.

    Raises ValueError for anything that is not a finite number.
    """
    try:
        value = Decimal(str(credits))
    except InvalidOperation:
        raise ValueError(f"not a number: {credits!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite number: {credits!r}")
    return int((value * MICRO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_micro_checked(credits: object, *, limit: int) -> int:
    """`to_micro` for untrusted input: a number (int, float, Decimal or numeric text — not a
    bool, list or anything else) of at most `limit` credits either way.

    Raises ValueError otherwise, before any arithmetic that could overflow.
    """
    if isinstance(credits, bool) or not isinstance(credits, (int, float, str, Decimal)):
        raise ValueError(f"not a number: {type(credits).__name__}")
    try:
        value = Decimal(credits.strip() if isinstance(credits, str) else str(credits))
    except (InvalidOperation, ValueError):
        raise ValueError(f"not a number: {credits!r}") from None
    if not value.is_finite() or value.copy_abs() > limit:  # copy_abs: no rounding, so no overflow
        raise ValueError(f"not a finite number up to {limit}: {credits!r}")
    return to_micro(value)


def to_credits(micro: int) -> float:
    """Micro-credits → credits for JSON output (exact to 6 decimals)."""
    return micro / MICRO


def fmt_credits(micro: int, places: int = 6) -> str:
    """Micro-credits → a display string without float error, trailing zeros trimmed."""
    d = (Decimal(micro) / MICRO).quantize(Decimal(1).scaleb(-places))
    text = f"{d:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def cost_micro(total_tokens: int, price_per_1k_micro: int) -> int:
    """credits_used = total_tokens / 1000 × cost_per_1k, in micro-credits.

    Exact for the catalog's prices (a multiple of 1,000 micro per 1K tokens means a whole
    number of micro-credits per token); any remainder is rounded up, so the gateway never
    under-charges by a fraction of a micro-credit.
    """
    return -(-total_tokens * price_per_1k_micro // 1000)


def split_cost_micro(parts) -> int:
    """Σ tokens × price_per_1k / 1000 over (tokens, price_per_1k_micro) pairs, in micro-credits.

    Summed exactly before one rounding up, so a split-rate call is never charged more than a
    micro-credit above its exact cost, and never less."""
    return -(-sum(tokens * price for tokens, price in parts) // 1000)
