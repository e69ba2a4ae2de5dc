"""Snapshots: an event-sourced aggregate's state and version in ``{category}:snapshot-{id}``.

A snapshot is one message of type ``Snapshot`` with data ``{"version": n, "state": {...}}``;
loading takes the stream's latest one and replays only the events after position ``n - 1``.
A snapshot that no longer validates (the model changed) is ignored with a warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.store.message import NewMessage
from worker.store.stream_name import stream

if TYPE_CHECKING:
    from worker.model.aggregate import BaseAggregate
    from worker.store.message_store import MessageStore

A = TypeVar("A", bound="BaseAggregate")

SNAPSHOT_TYPE = "Snapshot"

log = structlog.get_logger(__name__)


class SnapshotData(BaseModel):
    """The data of a snapshot message."""

    model_config = ConfigDict(frozen=True)

    version: int = Field(ge=1)
    state: dict[str, Any]


def snapshot_stream(cls: type[BaseAggregate], ident: str) -> str:
    """``{category}:snapshot-{id}``: a category of its own, apart from the events."""
    return stream(f"{cls.__stream_category__}:snapshot", ident)


def snapshot_message(aggregate: BaseAggregate) -> NewMessage:
    """A snapshot of ``aggregate`` at its current version."""
    data = SnapshotData(version=aggregate.version, state=aggregate.model_dump(mode="json"))
    return NewMessage(SNAPSHOT_TYPE, data.model_dump(mode="json"))


async def load_snapshot(store: MessageStore, cls: type[A], ident: str) -> A | None:
    """The aggregate as of its latest valid snapshot, or ``None`` (none, or no longer valid)."""
    name = snapshot_stream(cls, ident)
    message = await store.last_message(name, type=SNAPSHOT_TYPE)
    if message is None:
        return None
    try:
        data = SnapshotData.model_validate(message.data)
        aggregate = cls.model_validate(data.state)
    except ValidationError as error:
        log.warning(
            "snapshot ignored",
            stream_name=name,
            position=message.position,
            reason=f"{error.error_count()} validation error(s): {error.errors()[0]['msg']}",
        )
        return None
    if aggregate.id != ident:
        log.warning("snapshot ignored", stream_name=name, reason=f"holds id {aggregate.id!r}")
        return None
    aggregate._version = aggregate._stored_version = aggregate._snapshot_version = data.version
    return aggregate
