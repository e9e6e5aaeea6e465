"""What an operator watches: Prometheus metrics of one gateway process.

Each `Gateway` has its own registry (tests run several in one interpreter). The hot path
never builds label sets twice: every counter child is looked up once per label
combination and kept (`prometheus_client`'s `.labels()` takes a lock and hashes the
labels on each call). Gauges that describe state owned elsewhere (open streams, holds
outstanding, pending settlements) are read when scraped, not updated per request.
"""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]

# Seconds; upstream calls range from a fast refusal to minutes of generation.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)


class Metrics:
    """Counters, histograms and gauges of one process; `render()` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter("cheaplm_requests", "HTTP requests answered, by route, status and model.",
                                 ["route", "status", "model"], registry=registry)
        self._upstream = Histogram("cheaplm_upstream_latency_seconds", "Billed calls: request received to "
                                   "settlement, by model.", ["model"], buckets=LATENCY_BUCKETS,
                                   registry=registry)
        self._ttft = Histogram("cheaplm_time_to_first_token_seconds", "Billed calls: request received to "
                               "the answer's first bytes, by model.", ["model"], buckets=TTFT_BUCKETS,
                               registry=registry)
        self._tokens = Counter("cheaplm_tokens", "Tokens billed, by model and kind (input, output, "
                               "cache_creation_input, cache_read_input).", ["model", "kind"], registry=registry)
        self._credits = Counter("cheaplm_credits_micro", "Micro-credits charged, by model.", ["model"],
                                registry=registry)
        self.rate_limited = Counter("cheaplm_rate_limit_refusals", "Requests refused by a key's rate limit.",
                                    registry=registry)
        self.database_errors = Counter("cheaplm_database_errors", "Requests or settlements that failed "
                                       "on a database error.", registry=registry)
        self._gauges: dict[str, Gauge] = {}
        for name, doc in (("open_streams", "Streams being relayed now."),
                          ("holds_outstanding", "Credit holds placed by this process and not yet settled."),
                          ("pending_settlements", "Settlements kept in memory, waiting for the database.")):
            self._gauges[name] = Gauge(f"cheaplm_{name}", doc, registry=registry)
        self._children: dict[tuple, object] = {}

    def watch(self, name: str, read: Callable[[], float]) -> None:
        """Report gauge `name` (open_streams, holds_outstanding, pending_settlements) as `read()`
        at each scrape."""
        self._gauges[name].set_function(read)

    def _child(self, metric, *labels: str):
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, route: str, status: int, model: str) -> None:
        self._child(self._requests, route, str(status), model).inc()

    def call(self, model: str, *, latency_ms: float | None, ttft_ms: float | None, tokens: dict[str, int],
             credits: int) -> None:
        """One settled billed call."""
        if latency_ms is not None:
            self._child(self._upstream, model).observe(latency_ms / 1000)
        if ttft_ms is not None:
            self._child(self._ttft, model).observe(ttft_ms / 1000)
        for kind, count in tokens.items():
            if count:
                self._child(self._tokens, model, kind).inc(count)
        if credits:
            self._child(self._credits, model).inc(credits)

    def render(self) -> bytes:
        return generate_latest(self.registry)
