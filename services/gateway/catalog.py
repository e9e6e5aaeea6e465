"""The model catalog: models, prices and aliases as data in MongoDB (`models` collection)."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from services.core.errors import Conflict, InvalidRequest, NotFound
from services.core.money import fmt_credits, to_micro_checked
from services.core.types import RATE_FIELDS, Model
from services.store.db import AFTER, DuplicateKeyError

# The current generation (the ids Claude Code and Codex send by default), then the public
# docs' model table. Each entry is inserted once, the first time a gateway starts that knows
# it (`catalog_seed` in the `meta` collection remembers which were), so new releases reach
# existing deployments while admins' edits and deletions stay.
_CURRENT = {"max_input": 200_000, "max_output": 64_000, "features": ["thinking", "vision"],
            "adaptive_thinking": True, "max_input_1m": 1_000_000}
SEED_MODELS: list[dict] = [
    {"_id": "claude-opus-4-8", "upstream_id": "claude-opus-4-8", "display_name": "Claude Opus 4.8",
     **_CURRENT, "cost_per_1k": "0.22",
     "aliases": ["claude-opus-4.8", "opus-4.8", "opus-4-8", "claude-4.8-opus", "opus"]},
    {"_id": "claude-opus-4-7", "upstream_id": "claude-opus-4-7", "display_name": "Claude Opus 4.7",
     **_CURRENT, "cost_per_1k": "0.22",
     "aliases": ["claude-opus-4.7", "opus-4.7", "opus-4-7", "claude-4.7-opus"]},
    {"_id": "claude-sonnet-5", "upstream_id": "claude-sonnet-5", "display_name": "Claude Sonnet 5",
     **_CURRENT, "cost_per_1k": "0.13",
     "aliases": ["claude-sonnet-5-0", "sonnet-5", "claude-5-sonnet", "sonnet"]},
    {"_id": "claude-sonnet-4-6", "upstream_id": "claude-sonnet-4-6", "display_name": "Claude Sonnet 4.6",
     **_CURRENT, "cost_per_1k": "0.13",
     "aliases": ["claude-sonnet-4.6", "sonnet-4.6", "sonnet-4-6", "claude-4.6-sonnet"]},
    {"_id": "claude-haiku-4-5-20251001", "upstream_id": "claude-haiku-4-5-20251001",
     "display_name": "Claude Haiku 4.5", **_CURRENT, "adaptive_thinking": False, "max_input_1m": 0, "cost_per_1k": "0.05",
     "aliases": ["claude-haiku-4-5", "claude-haiku-4.5", "haiku-4.5", "haiku-4-5", "claude-4.5-haiku", "haiku"]},
    {"_id": "claude-opus-4.6", "upstream_id": "claude-opus-4-6", "display_name": "Claude Opus 4.6",
     "max_input": 200_000, "max_output": 32_000, "cost_per_1k": "0.22",
     "features": ["thinking", "vision"], "adaptive_thinking": True,
     "aliases": ["claude-opus-4-6", "opus-4.6", "opus-4-6", "claude-4.6-opus"]},
    {"_id": "claude-opus-4.5", "upstream_id": "claude-opus-4-5", "display_name": "Claude Opus 4.5",
     "max_input": 200_000, "max_output": 32_000, "cost_per_1k": "0.22",
     "features": ["thinking", "vision"],
     "aliases": ["claude-opus-4-5", "claude-opus-4-5-20251101", "opus-4.5", "opus-4-5", "claude-4.5-opus"]},
    {"_id": "claude-opus-4-20250514", "upstream_id": "claude-opus-4-20250514", "display_name": "Claude Opus 4",
     "max_input": 200_000, "max_output": 32_000, "cost_per_1k": "0.22",
     "features": ["thinking", "vision"],
     "aliases": ["claude-opus-4", "claude-opus-4-0", "claude-4-opus", "opus-4"]},
    {"_id": "claude-sonnet-4-5-20250514", "upstream_id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5",
     "max_input": 200_000, "max_output": 8_000, "cost_per_1k": "0.13",
     "features": ["thinking", "vision"],
     "aliases": ["claude-sonnet-4-5", "claude-sonnet-4.5", "claude-sonnet-4-5-20250929", "claude-4.5-sonnet",
                 "sonnet-4.5", "sonnet-4-5"]},
    {"_id": "claude-sonnet-4-20250514", "upstream_id": "claude-sonnet-4-20250514", "display_name": "Claude Sonnet 4",
     "max_input": 200_000, "max_output": 16_000, "cost_per_1k": "0.13",
     "features": ["thinking", "vision"],
     "aliases": ["claude-sonnet-4", "claude-sonnet-4-0", "claude-4-sonnet", "sonnet-4"]},
    {"_id": "claude-haiku-3-5-20241022", "upstream_id": "claude-3-5-haiku-20241022", "display_name": "Claude Haiku 3.5",
     "max_input": 200_000, "max_output": 8_000, "cost_per_1k": "0.04",
     "features": ["vision"],
     "aliases": ["claude-haiku-3-5", "claude-haiku-3.5", "claude-3-5-haiku-20241022", "claude-3-5-haiku-latest",
                 "claude-3-5-haiku", "claude-3.5-haiku", "haiku-3.5", "haiku-3-5"]},
]


def _norm(name: str) -> str:
    return name.strip().lower()


# Admin edits: the catalog service is the one writer of `models`.

MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
MAX_TOKENS_LIMIT = 100_000_000
MAX_PRICE = 1_000_000  # credits per 1K tokens
MAX_ALIASES, MAX_FEATURES = 50, 16
MODEL_FIELDS = ("id", "upstream_model", "display_name", "aliases", "max_input", "max_output", "price_per_1k",
                "rates", "features", "enabled")


def _name(value: object, param: str) -> str:
    if not isinstance(value, str) or not MODEL_ID_RE.match(value.strip()):
        raise InvalidRequest(f"{param}: 1–100 characters: letters, digits, '.', '_', ':', '-' "
                             f"(starting with a letter or digit)", param=param)
    return value.strip()


def _tokens(value: object, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_LIMIT:
        raise InvalidRequest(f"{param}: an integer from 1 to {MAX_TOKENS_LIMIT}", param=param)
    return value


def _price(value: object, param: str) -> str:
    try:
        micro = to_micro_checked(value, limit=MAX_PRICE)
    except ValueError:
        raise InvalidRequest(f"{param}: a number of credits per 1K tokens from 0 to {MAX_PRICE}", param=param) from None
    if micro < 0:
        raise InvalidRequest(f"{param}: must not be negative", param=param)
    return fmt_credits(micro)


def model_changes(body: dict, *, creating: bool) -> dict:
    """The `models` document fields for an API body (ids, limits, prices as exact decimal
    text); raises InvalidRequest naming the first bad field. Creating needs id, max_input,
    max_output and price_per_1k."""
    unknown = sorted(set(body) - set(MODEL_FIELDS))
    if unknown:
        raise InvalidRequest(f"{unknown[0]}: unknown field; the fields are {', '.join(MODEL_FIELDS)}",
                             param=unknown[0])
    if creating:
        for required in ("id", "max_input", "max_output", "price_per_1k"):
            if required not in body:
                raise InvalidRequest(f"{required}: field required", param=required)
    out: dict = {}
    if "id" in body:
        out["_id"] = _name(body["id"], "id")
    if "upstream_model" in body:
        out["upstream_id"] = _name(body["upstream_model"], "upstream_model")
    if "display_name" in body:
        name = body["display_name"]
        if not isinstance(name, str) or not 0 < len(name.strip()) <= 100:
            raise InvalidRequest("display_name: text of 1–100 characters", param="display_name")
        out["display_name"] = name.strip()
    if "aliases" in body:
        aliases = body["aliases"]
        if not isinstance(aliases, list) or len(aliases) > MAX_ALIASES:
            raise InvalidRequest(f"aliases: a list of at most {MAX_ALIASES} names", param="aliases")
        out["aliases"] = list(dict.fromkeys(_name(a, "aliases") for a in aliases))
    for name in ("max_input", "max_output"):
        if name in body:
            out[name] = _tokens(body[name], name)
    if "price_per_1k" in body:
        out["cost_per_1k"] = _price(body["price_per_1k"], "price_per_1k")
    if "rates" in body:
        rates = body["rates"]
        if rates is not None:
            if not isinstance(rates, dict):
                raise InvalidRequest("rates: an object with input, output, cache_write_5m, cache_write_1h and "
                                     "cache_read (credits per 1K tokens), or null for one price", param="rates")
            extra = sorted(set(rates) - set(RATE_FIELDS))
            if extra:
                raise InvalidRequest(f"rates.{extra[0]}: unknown rate", param=f"rates.{extra[0]}")
            rates = {f: _price(rates[f], f"rates.{f}") if f in rates else None for f in RATE_FIELDS}
            missing = [f for f, v in rates.items() if v is None]
            if missing:
                raise InvalidRequest(f"rates.{missing[0]}: field required", param=f"rates.{missing[0]}")
        out["rates"] = rates
    if "features" in body:
        features = body["features"]
        if (not isinstance(features, list) or len(features) > MAX_FEATURES
                or not all(isinstance(f, str) and re.match(r"^[a-z0-9_-]{1,32}$", f) for f in features)):
            raise InvalidRequest(f"features: a list of at most {MAX_FEATURES} lower-case names "
                                 f"(e.g. thinking, vision)", param="features")
        out["features"] = list(dict.fromkeys(features))
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise InvalidRequest("enabled: must be true or false", param="enabled")
        out["enabled"] = body["enabled"]
    return out


async def _check_names(db, doc: dict) -> None:
    """Refuse names (id, upstream id, aliases) another model already answers to."""
    mine = {_norm(n) for n in (doc["_id"], *doc.get("aliases", ()))}
    for other in await db.models.find({"_id": {"$ne": doc["_id"]}}).to_list(None):
        taken = {_norm(n) for n in (other["_id"], *other.get("aliases", ()))} & mine
        if taken:
            raise Conflict(f"aliases: {sorted(taken)[0]!r} already names model {other['_id']!r}", param="aliases")


@dataclass
class CatalogService:
    """Resolves model names (ids, aliases, dated/undated forms) against the catalog.

    The catalog is read from MongoDB into a process-local snapshot at start and refreshed
    every `refresh_seconds` (and at once after an edit made through this process), so the
    hot path never queries the database.
    """

    db: object
    refresh_seconds: float = 5.0  # Settings.catalog_refresh_seconds
    _models: dict[str, Model] = field(default_factory=dict)
    _index: dict[str, Model] = field(default_factory=dict)

    async def seed(self) -> None:
        """Insert each seed model this database has not had yet (never one an admin removed
        or edited), then load the catalog."""
        meta = await self.db.meta.find_one({"_id": "catalog_seed"}) or {}
        seeded = set(meta.get("ids", ()))
        present = {d["_id"] for d in await self.db.models.find({}, {"_id": 1}).to_list(None)}
        now = int(time.time())
        new = [{**m, "created": now, "enabled": True, "order": i}
               for i, m in enumerate(SEED_MODELS) if m["_id"] not in seeded | present]
        for doc in new:
            try:
                await self.db.models.insert_one(doc)
            except DuplicateKeyError:  # another process starting at the same time seeded it
                pass
        await self.db.meta.update_one({"_id": "catalog_seed"},
                                      {"$addToSet": {"ids": {"$each": [m["_id"] for m in SEED_MODELS]}}},
                                      upsert=True)
        await self.reload()

    async def reload(self) -> None:
        docs = await self.db.models.find({"enabled": {"$ne": False}}).sort([("order", 1), ("_id", 1)]).to_list(None)
        models = {d["_id"]: Model.from_doc(d) for d in docs}
        index: dict[str, Model] = {}
        for m in models.values():
            for name in (m.id, m.upstream_id, *m.aliases):
                index.setdefault(_norm(name), m)
        self._models, self._index = models, index

    def models(self) -> list[Model]:
        return list(self._models.values())

    def resolve(self, name: object) -> Model:
        """Return the model for an id or alias (case-insensitive).

        Raises InvalidRequest naming the valid models when the name is unknown.
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest("model: field required (a model name string)", param="model")
        # Claude Code names its long-context variants "<id>[1m]" (it sends the context-1m beta).
        key = _norm(name).removesuffix("[1m]")
        model = self._index.get(key)
        if model is None:
            # Dated ids of a known family ("claude-sonnet-4-20250514" style) and "-latest".
            base = re.sub(r"(-\d{8}|-latest)$", "", key)
            model = self._index.get(base)
        if model is None:
            valid = ", ".join(self._models)
            raise InvalidRequest(f"Unknown model: {name!r}. Valid models: {valid}", param="model")
        return model

    async def list_all(self) -> list[dict]:
        """Every model document, disabled ones included, in catalog order."""
        return await self.db.models.find({}).sort([("order", 1), ("_id", 1)]).to_list(None)


    async def get_doc(self, model_id: str) -> dict:
        doc = await self.db.models.find_one({"_id": model_id})
        if doc is None:
            raise NotFound(f"No such model: {model_id!r}")
        return doc


    async def create(self, body: dict) -> dict:
        """Add a model from an API body (see model_changes); raises Conflict for a taken id or alias."""
        doc = model_changes(body, creating=True)
        doc.setdefault("upstream_id", doc["_id"])
        doc.setdefault("display_name", doc["_id"])
        doc.setdefault("aliases", [])
        doc.setdefault("features", [])
        doc.setdefault("enabled", True)
        doc.setdefault("rates", None)
        doc.update(created=int(time.time()), order=1000)
        if await self.db.models.find_one({"_id": doc["_id"]}, {"_id": 1}):
            raise Conflict(f"id: model {doc['_id']!r} exists", param="id")
        await _check_names(self.db, doc)
        try:
            await self.db.models.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"id: model {doc['_id']!r} exists", param="id") from None
        await self.reload()
        return doc


    async def update(self, model_id: str, body: dict) -> tuple[dict, dict]:
        """Change a model's fields: (document before, document after). The id cannot change."""
        before = await self.get_doc(model_id)
        changes = model_changes(body, creating=False)
        if changes.pop("_id", model_id) != model_id:
            raise InvalidRequest("id: a model's id cannot change (add the new name as an alias)", param="id")
        await _check_names(self.db, {**before, **changes})
        after = await self.db.models.find_one_and_update({"_id": model_id}, {"$set": changes}, return_document=AFTER)
        if after is None:
            raise NotFound(f"No such model: {model_id!r}")
        await self.reload()
        return before, after


    async def delete(self, model_id: str) -> dict:
        """Remove a model (the seed never brings it back); returns its last document."""
        before = await self.get_doc(model_id)
        await self.db.models.delete_many({"_id": model_id})
        await self.reload()
        return before
