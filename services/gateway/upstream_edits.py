"""Upstream records as the admin console edits them, and the failover loop of
`UpstreamService.open`.

`UpstreamEditsMixin` gives UpstreamService (the one writer of `upstreams`) its admin
methods; the record fields are
    {_id, name, base_url, api_key_enc, priority, weight, models, enabled, beta_allowlist}
(`beta_allowlist`: null forwards the client's anthropic-beta unchanged; a list forwards only
those betas, for upstreams that reject unknown ones).
"""
from __future__ import annotations

import asyncio
import random
import re
import time

import orjson
from bson import ObjectId

from services.core.errors import Conflict, GatewayError, InvalidRequest, NotFound, UpstreamError
from services.gateway.pool import CLOSED, key_hint, model_map, retryable_status
from services.store.db import AFTER

UPSTREAM_FIELDS = ("name", "base_url", "api_key", "priority", "weight", "models", "enabled", "beta_allowlist")
URL_RE = re.compile(r"^https?://[^\s/?#]+(?:/[^\s?#]*)?$")
NAME_RE = re.compile(r"^[\w .:-]{1,64}$")
BACKOFF_BASE, BACKOFF_MAX = 0.05, 1.0  # seconds; full jitter, doubling per attempt
SERVED_BY = "cheaplm_upstream"  # the response extension naming the upstream that answered


def upstream_from_doc(cls, doc: dict, keybox):
    allow = doc.get("beta_allowlist")
    return cls(id=str(doc["_id"]), base_url=doc["base_url"].rstrip("/"),
               api_key=keybox.decrypt(doc.get("api_key_enc")) or "",
               beta_allowlist=tuple(allow) if allow is not None else None,
               name=doc.get("name") or str(doc["_id"]), priority=int(doc.get("priority", 0)),
               weight=int(doc.get("weight", 1)), models=tuple(doc.get("models") or ()),
               enabled=doc.get("enabled", True) is not False)


def served_by(response) -> str | None:
    """The name of the upstream that gave `response` (see `UpstreamService.open`)."""
    return getattr(response, "extensions", {}).get(SERVED_BY)


def body_for(upstream, body: bytes, model: str | None) -> bytes:
    """The request body with the model id this upstream knows the model by, when its
    `models` entry names one ("catalog-id=upstream-id")."""
    mapped = model_map(upstream).get(model) if model and upstream.models else None
    if not mapped:
        return body
    return orjson.dumps({**orjson.loads(body), "model": mapped})


def _backoff(attempt: int) -> float:
    return random.uniform(0, min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1)))


async def failover_open(service, path: str, body: bytes, client_headers, *, query: str, stream: bool,
                        model: str | None):
    """Try the pool's upstreams in order (at most UPSTREAM_MAX_ATTEMPTS) until one answers
    with something other than a connection error, 429 or 5xx; the last one's answer (or
    error) is the caller's. Nothing has reached the client yet, so trying again is safe."""
    pool = service.pool
    candidates = pool.order(model)
    if not candidates:
        if not pool.serving(None):
            raise UpstreamError("No upstream is configured.")
        raise UpstreamError(f"No enabled upstream serves the model {model!r}.")
    attempts = candidates[:max(1, service.settings.upstream_max_attempts)]
    last_error: UpstreamError | None = None
    for i, upstream in enumerate(attempts):
        if i:
            await asyncio.sleep(_backoff(i))
        pool.begin(upstream)
        try:
            response = await service.open_one(upstream, path, body_for(upstream, body, model), client_headers,
                                              query=query, stream=stream)
        except UpstreamError as exc:
            pool.record_failure(upstream, exc.message)
            last_error = exc
            continue
        if retryable_status(response.status_code):
            pool.record_failure(upstream, f"HTTP {response.status_code}")
            if i < len(attempts) - 1:
                await response.aclose()
                continue
        else:
            pool.record_success(upstream)
        response.extensions[SERVED_BY] = upstream.name
        return response
    raise last_error


def _int(value, param: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{param}: an integer from {low} to {high}", param=param)
    return value


def _names(value, param: str, limit: int = 100) -> list[str]:
    if (not isinstance(value, list) or len(value) > limit
            or not all(isinstance(v, str) and 0 < len(v.strip()) <= 100 for v in value)):
        raise InvalidRequest(f"{param}: a list of at most {limit} names", param=param)
    return list(dict.fromkeys(v.strip() for v in value))


def upstream_changes(body: dict, keybox, *, creating: bool) -> dict:
    """The `upstreams` document fields for an API body; raises InvalidRequest naming the
    first bad field. Creating needs name, base_url and api_key."""
    unknown = sorted(set(body) - set(UPSTREAM_FIELDS))
    if unknown:
        raise InvalidRequest(f"{unknown[0]}: unknown field; the fields are {', '.join(UPSTREAM_FIELDS)}",
                             param=unknown[0])
    if creating:
        for required in ("name", "base_url", "api_key"):
            if required not in body:
                raise InvalidRequest(f"{required}: field required", param=required)
    out: dict = {}
    if "name" in body:
        if not isinstance(body["name"], str) or not NAME_RE.match(body["name"].strip()):
            raise InvalidRequest("name: 1–64 letters, digits, spaces, '.', ':', '_' or '-'", param="name")
        out["name"] = body["name"].strip()
    if "base_url" in body:
        url = body["base_url"]
        if not isinstance(url, str) or len(url) > 500 or not URL_RE.match(url.strip()):
            raise InvalidRequest("base_url: an http:// or https:// URL", param="base_url")
        out["base_url"] = url.strip().rstrip("/")
    if "api_key" in body:
        key = body["api_key"]
        if not isinstance(key, str) or not 0 < len(key.strip()) <= 1000:
            raise InvalidRequest("api_key: the upstream's API key (1–1000 characters)", param="api_key")
        out["api_key_enc"] = keybox.encrypt(key.strip())
    if "priority" in body:
        out["priority"] = _int(body["priority"], "priority", 0, 1000)
    if "weight" in body:
        out["weight"] = _int(body["weight"], "weight", 0, 1000)
    if "models" in body:
        out["models"] = _names(body["models"], "models", 500)  # "catalog-id" or "catalog-id=upstream-id"
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise InvalidRequest("enabled: must be true or false", param="enabled")
        out["enabled"] = body["enabled"]
    if "beta_allowlist" in body:
        allow = body["beta_allowlist"]
        out["beta_allowlist"] = None if allow is None else _names(allow, "beta_allowlist")
    return out


class UpstreamEditsMixin:
    """Admin reads and edits of `upstreams` (UpstreamService's collection)."""

    def view(self, doc: dict) -> dict:
        """A record as the API and pages show it: the key as a hint, this process's health."""
        up = upstream_from_doc(_Shape, doc, self.keybox)
        stats = self.pool.stats.get(up.id)
        breaker = self.pool.breakers.get(up.id)
        return {"id": up.id, "name": up.name, "base_url": up.base_url, "api_key_hint": key_hint(up.api_key),
                "priority": up.priority, "weight": up.weight, "models": list(up.models), "enabled": up.enabled,
                "beta_allowlist": list(up.beta_allowlist) if up.beta_allowlist is not None else None,
                "health": {"state": breaker.status() if breaker else CLOSED,
                           "requests": stats.requests if stats else 0, "failures": stats.failures if stats else 0,
                           "last_error": stats.last_error if stats else None,
                           "skipped_because": self.pool.why_skipped(up)}}

    async def list_docs(self) -> list[dict]:
        return await self.db.upstreams.find({}).sort([("priority", 1), ("_id", 1)]).to_list(None)

    async def get_doc(self, upstream_id: str) -> dict:
        doc = await self.db.upstreams.find_one({"_id": upstream_id})
        if doc is None:
            raise NotFound(f"No such upstream: {upstream_id!r}")
        return doc

    async def create(self, body: dict) -> dict:
        doc = upstream_changes(body, self.keybox, creating=True)
        doc = {"_id": str(ObjectId()), "priority": 0, "weight": 1, "models": [], "enabled": True,
               "beta_allowlist": None, **doc}
        if await self.db.upstreams.find_one({"name": doc["name"]}, {"_id": 1}):
            raise Conflict(f"name: an upstream named {doc['name']!r} exists", param="name")
        await self.db.upstreams.insert_one(doc)
        await self.reload()
        return doc

    async def update(self, upstream_id: str, body: dict) -> tuple[dict, dict]:
        before = await self.get_doc(upstream_id)
        changes = upstream_changes(body, self.keybox, creating=False)
        if "name" in changes and await self.db.upstreams.find_one(
                {"name": changes["name"], "_id": {"$ne": upstream_id}}, {"_id": 1}):
            raise Conflict(f"name: an upstream named {changes['name']!r} exists", param="name")
        after = await self.db.upstreams.find_one_and_update({"_id": upstream_id}, {"$set": changes},
                                                            return_document=AFTER)
        if after is None:
            raise NotFound(f"No such upstream: {upstream_id!r}")
        await self.reload()
        return before, after

    async def delete(self, upstream_id: str) -> dict:
        before = await self.get_doc(upstream_id)
        await self.db.upstreams.delete_many({"_id": upstream_id})
        await self.reload()
        return before

    async def test(self, upstream_id: str, model: str) -> dict:
        """A one-token call to this upstream alone: {"ok", "status", "latency_ms", "error"}."""
        doc = await self.get_doc(upstream_id)
        up = upstream_from_doc(_Shape, doc, self.keybox)
        body = orjson.dumps({"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]})
        started = time.monotonic()
        try:
            response = await self.open_one(up, "/v1/messages", body, {})
            if response.status_code == 200:
                await self.read(response)
                error = None
            else:
                error = (await self.error_for(response)).message
            status = response.status_code
        except GatewayError as exc:
            status, error = None, exc.message
        return {"ok": error is None, "status": status, "error": error, "model": model,
                "latency_ms": round((time.monotonic() - started) * 1000, 1)}


class _Shape:
    """A plain record for `view`/`test` (the Upstream dataclass lives in upstream.py, which
    imports this module)."""

    def __init__(self, **fields) -> None:
        self.__dict__.update(fields)
