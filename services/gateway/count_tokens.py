"""count_tokens: forwarded to the upstream (never billed), with identical bodies answered
from a short in-process cache, since some IDE clients send dozens of identical counts
within a second at start-up."""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.gateway.upstream import FORWARD_REQUEST_HEADERS, UpstreamService, forwarded_query


@dataclass
class CountTokensService:
    """`count` answers like the upstream's count_tokens; an identical request (same body,
    forwarded headers and query) within `ttl` seconds is answered from memory. At most
    `size` answers are kept (least recently used dropped first); failures are not cached."""

    upstream: UpstreamService
    ttl: float = 5.0
    size: int = 1024
    _answers: OrderedDict = field(default_factory=OrderedDict)  # digest -> (expires, headers, body)

    async def count(self, body: bytes, client_headers: Mapping[str, str], *, query: str = "") -> tuple[dict, bytes]:
        """(headers to pass back, body); raises the upstream's mapped GatewayError."""
        digest = self._digest(body, client_headers, query)
        now = time.monotonic()
        hit = self._answers.get(digest)
        if hit is not None and hit[0] > now:
            self._answers.move_to_end(digest)
            return hit[1], hit[2]
        headers, raw = await self.upstream.call("/v1/messages/count_tokens", body, client_headers, query=query)
        if self.ttl > 0 and self.size > 0:
            self._answers[digest] = (now + self.ttl, headers, raw)
            self._answers.move_to_end(digest)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
        return headers, raw

    @staticmethod
    def _digest(body: bytes, client_headers: Mapping[str, str], query: str) -> bytes:
        h = hashlib.sha256(body)
        for name in FORWARD_REQUEST_HEADERS:
            h.update(b"\0" + (client_headers.get(name) or "").encode("utf-8", "replace"))
        h.update(b"\0" + forwarded_query(query).encode())
        return h.digest()
