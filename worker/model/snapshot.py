"""Snapshots: an event-sourced aggregate's state and version in ``{category}:snapshot-{id}``.

The domain's conventions lay a snapshot out: Eventide's (the default) is one message of type
``Snapshot`` with data ``{"version": n, "state": {...}}``; Protean's one of type ``SNAPSHOT``
whose data is the aggregate's fields plus ``_version`` (the position of its last event), and no
metadata. Loading takes the stream's latest one and replays only the events after position
``n - 1``. A snapshot that no longer validates (the model changed) is ignored with a warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import structlog
from pydantic import ValidationError

from worker.store.conventions import EVENTIDE, SnapshotLayoutError

if TYPE_CHECKING:
    from worker.model.aggregate import BaseAggregate
    from worker.store.conventions import Conventions
    from worker.store.message import NewMessage
    from worker.store.message_store import MessageStore

A = TypeVar("A", bound="BaseAggregate")

SNAPSHOT_TYPE = EVENTIDE.snapshot_type

log = structlog.get_logger(__name__)


def snapshot_stream(
    cls: type[BaseAggregate], ident: str, conventions: Conventions = EVENTIDE
) -> str:
    """``{category}:snapshot-{id}``: a category of its own, apart from the events."""
    return conventions.snapshot_stream(cls.__stream_category__, ident)


def snapshot_message(aggregate: BaseAggregate, conventions: Conventions = EVENTIDE) -> NewMessage:
    """A snapshot of ``aggregate`` at its current version."""
    return conventions.snapshot_message(aggregate.model_dump(mode="json"), aggregate.version)


async def load_snapshot(
    store: MessageStore, cls: type[A], ident: str, conventions: Conventions = EVENTIDE
) -> A | None:
    """The aggregate as of its latest valid snapshot, or ``None`` (none, or no longer valid)."""
    name = snapshot_stream(cls, ident, conventions)
    message = await store.last_message(name, type=conventions.snapshot_type)
    if message is None:
        return None
    try:
        state, version = conventions.snapshot_of(message)
        aggregate = cls.model_validate(state)
    except ValidationError as error:
        reason = f"{error.error_count()} validation error(s): {error.errors()[0]['msg']}"
        log.warning("snapshot ignored", stream_name=name, position=message.position, reason=reason)
        return None
    except SnapshotLayoutError as error:
        log.warning(
            "snapshot ignored", stream_name=name, position=message.position, reason=str(error)
        )
        return None
    if aggregate.id != ident:
        log.warning("snapshot ignored", stream_name=name, reason=f"holds id {aggregate.id!r}")
        return None
    aggregate._version = aggregate._stored_version = aggregate._snapshot_version = version
    return aggregate
