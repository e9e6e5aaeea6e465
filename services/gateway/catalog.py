"""The model catalog: models, prices and aliases as data in MongoDB (`models` collection)."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from services.core.errors import InvalidRequest
from services.core.types import Model

# Seeded on first start from the public docs' model table. Admins edit these documents;
# nothing below is consulted once the collection has data.
SEED_MODELS: list[dict] = [
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
        """Insert the seed models if the collection is empty."""
        if await self.db.models.count_documents({}) == 0:
            now = int(time.time())
            await self.db.models.insert_many([{**m, "created": now, "enabled": True, "order": i}
                                              for i, m in enumerate(SEED_MODELS)])
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
        model = self._index.get(_norm(name))
        if model is None:
            # Dated ids of a known family ("claude-sonnet-4-20250514" style) and "-latest".
            base = re.sub(r"(-\d{8}|-latest)$", "", _norm(name))
            model = self._index.get(base)
        if model is None:
            valid = ", ".join(self._models)
            raise InvalidRequest(f"Unknown model: {name!r}. Valid models: {valid}", param="model")
        return model
