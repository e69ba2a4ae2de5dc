"""Entities: pydantic models with an identity, validated on creation and on every assignment."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field


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
