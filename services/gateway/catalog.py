"""The model catalog: models, prices and aliases as data in MongoDB (`models` collection)."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from services.core.errors import InvalidRequest
from services.core.types import Model
from services.store.db import DuplicateKeyError

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
