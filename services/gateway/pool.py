"""The upstream pool: which upstreams may serve a request, in which order, and how healthy
each has been lately.

Order: enabled upstreams serving the model, by `priority` (lower first), then a weighted
random order among equal priorities (`weight`), skipping those whose circuit breaker is
open. A breaker counts this process's real failures (connection errors, 429, 5xx, 529):
`failures` of them within `window` seconds open it; after `cooldown` seconds one trial
request goes through (half-open); its success closes the breaker, its failure opens it
again. Breakers and counters live in each process: processes converge because they see the
same upstream behaving the same way, not by sharing state.

Upstream API keys are stored encrypted (`api_key_enc`, Fernet with a key derived from a
server secret) and only their last four characters are ever shown again.
"""
from __future__ import annotations

import base64
import hashlib
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})


def retryable_status(status: int) -> bool:
    """An answer another upstream may do better with: rate limited, overloaded, or failed."""
    return status == 429 or status >= 500


class KeyBox:
    """Encrypts upstream API keys at rest (Fernet: AES-128-CBC + HMAC-SHA256).

    The Fernet key is derived from `secret` (UPSTREAM_KEY_SECRET, else COOKIE_SECRET);
    without one (memory:// only) a random key serves this process, which is all an
    in-process store lives for."""

    def __init__(self, secret: str) -> None:
        raw = hashlib.sha256(b"cheaplm upstream api keys\0" + secret.encode()).digest() if secret else None
        self._fernet = Fernet(base64.urlsafe_b64encode(raw) if raw else Fernet.generate_key())

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str | None) -> str | None:
        """The key, or None when there is none or it was encrypted under another secret."""
        if not token:
            return None
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError):
            return None


def key_hint(plain: str | None) -> str:
    """What the pages show of a stored key."""
    return f"…{plain[-4:]}" if plain and len(plain) >= 8 else ("set" if plain else "none")


@dataclass
class Breaker:
    """One upstream's circuit breaker (see the module docstring)."""

    failures: int = 5
    window: float = 30.0
    cooldown: float = 30.0
    clock: Callable[[], float] = time.monotonic
    state: str = CLOSED
    opened_at: float = 0.0
    trial_in_flight: bool = False
    _recent: deque = field(default_factory=deque)

    def _current(self) -> str:
        if self.state == OPEN and self.clock() - self.opened_at >= self.cooldown:
            self.state, self.trial_in_flight = HALF_OPEN, False
        return self.state

    def status(self) -> str:
        return self._current()

    def available(self) -> bool:
        """May a request go to this upstream now? In half-open, only while no trial is out."""
        state = self._current()
        return state == CLOSED or (state == HALF_OPEN and not self.trial_in_flight)

    def begin(self) -> None:
        """A request is going to this upstream now (in half-open, it is the trial)."""
        if self._current() == HALF_OPEN:
            self.trial_in_flight = True

    def success(self) -> None:
        if self._current() == HALF_OPEN:
            self.state, self.trial_in_flight = CLOSED, False
            self._recent.clear()

    def failure(self) -> None:
        now = self.clock()
        if self._current() == HALF_OPEN:
            self.state, self.opened_at, self.trial_in_flight = OPEN, now, False
            return
        self._recent.append(now)
        while self._recent and now - self._recent[0] > self.window:
            self._recent.popleft()
        if self.state == CLOSED and len(self._recent) >= self.failures:
            self.state, self.opened_at = OPEN, now
            self._recent.clear()


@dataclass
class UpstreamStats:
    """What this process has seen of one upstream (shown on /admin/upstreams)."""

    requests: int = 0
    failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None


def model_map(upstream) -> dict[str, str | None]:
    """{catalog model id: the upstream's own id for it, or None to send the catalog's
    upstream id}, from `models` entries "id" or "id=upstream-id"."""
    out: dict[str, str | None] = {}
    for entry in upstream.models:
        name, _, upstream_id = entry.partition("=")
        out[name.strip()] = upstream_id.strip() or None
    return out


def weighted_order(items: list, weight: Callable[[object], int], rng: random.Random) -> list:
    """`items` in a random order where each comes first with probability ∝ its weight
    (weighted sampling without replacement; a weight of 0 goes last)."""
    keyed = []
    for item in items:
        w = weight(item)
        keyed.append((rng.random() ** (1.0 / w) if w > 0 else -1.0, item))
    keyed.sort(key=lambda pair: pair[0], reverse=True)
    return [item for _, item in keyed]


@dataclass
class UpstreamPool:
    """The enabled upstreams of the last reload with their breakers and counters (breakers
    and counters survive reloads: they are keyed by upstream id)."""

    breaker_failures: int = 5
    breaker_window: float = 30.0
    breaker_cooldown: float = 30.0
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    upstreams: list = field(default_factory=list)  # Upstream records, enabled or not
    breakers: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def replace(self, upstreams: list) -> None:
        self.upstreams = list(upstreams)
        for up in upstreams:
            self.breaker(up.id)
            self.stats.setdefault(up.id, UpstreamStats())

    def breaker(self, upstream_id: str) -> Breaker:
        if upstream_id not in self.breakers:
            self.breakers[upstream_id] = Breaker(self.breaker_failures, self.breaker_window,
                                                 self.breaker_cooldown, self.clock)
        return self.breakers[upstream_id]

    def serving(self, model: str | None) -> list:
        """Enabled upstreams that serve `model` (an upstream listing no models serves all)."""
        return [u for u in self.upstreams
                if u.enabled and (not u.models or model is None or model in model_map(u))]

    def order(self, model: str | None = None) -> list:
        """The upstreams to try for one request, best first; each breaker asked once.

        When every serving upstream's breaker refuses, all of them are tried anyway, in
        order: refusing every request would turn a suspicion into an outage."""
        serving = self.serving(model)
        by_priority: dict[int, list] = {}
        for u in serving:
            by_priority.setdefault(u.priority, []).append(u)
        ordered = [u for p in sorted(by_priority) for u in weighted_order(by_priority[p], lambda u: u.weight, self.rng)]
        allowed = [u for u in ordered if self.breaker(u.id).available()]
        return allowed or ordered

    def why_skipped(self, upstream) -> str | None:
        """Why requests do not go to this upstream now, or None if they may."""
        if not upstream.enabled:
            return "disabled"
        if not upstream.api_key:
            return "no usable API key (re-enter it)"
        state = self.breaker(upstream.id).status()
        if state == OPEN:
            return "circuit breaker open after recent failures"
        if state == HALF_OPEN:
            return "circuit breaker half-open: one trial request next"
        return None

    def begin(self, upstream) -> None:
        self.breaker(upstream.id).begin()

    def record_success(self, upstream) -> None:
        stats = self.stats.setdefault(upstream.id, UpstreamStats())
        stats.requests += 1
        stats.last_ok_at = time.time()
        self.breaker(upstream.id).success()

    def record_failure(self, upstream, reason: str) -> None:
        stats = self.stats.setdefault(upstream.id, UpstreamStats())
        stats.requests += 1
        stats.failures += 1
        stats.last_error, stats.last_error_at = reason, time.time()
        self.breaker(upstream.id).failure()
