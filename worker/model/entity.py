"""Entities: pydantic models with an identity, validated on creation and on every assignment."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from collections.abc import Callable


def new_id() -> str:
    """A fresh identity: a UUID4 in hex (32 characters, no ``-``, so it reads well in streams)."""
    return uuid.uuid4().hex


class BaseEntity(BaseModel):
    """Base of aggregates and of their child entities (the seed's ``HasMany`` items).

    Validation (``max_length``, required fields, ...) is pydantic's: it runs when an entity is
    created and again on each assignment, so an invalid state raises before anything is saved.
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    id: str = Field(default_factory=new_id, min_length=1, max_length=200)


def use_ids(cls: type[BaseEntity], factory: Callable[[], str] | None) -> None:
    """Give new instances of ``cls`` ids made by ``factory`` (``None``: ``new_id``, the
    default): the domain's conventions choose it (Protean's are dashed UUIDs)."""
    target = factory or new_id
    field = cls.model_fields["id"]
    if field.default_factory is not target:
        field.default_factory = target
        cls.model_rebuild(force=True)
