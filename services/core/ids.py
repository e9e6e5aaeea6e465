"""Document ids as they arrive from URLs, forms and cookies."""
from __future__ import annotations

from bson import ObjectId

from services.core.errors import NotFound


def as_object_id(value) -> ObjectId:
    """`value` as an ObjectId; raises NotFound for anything that cannot be one."""
    if isinstance(value, ObjectId):
        return value
    try:
        return ObjectId(str(value))
    except Exception:
        raise NotFound(f"No such id: {value!r}") from None
