"""The repository of event-sourced aggregates: load by replay, save with optimistic concurrency.

``add`` writes an aggregate's pending events to ``{category}-{id}`` in one atomic MessageDB write
whose expected version is the version the aggregate was loaded at, minus one (MessageDB counts
stream positions from 0; ``-1`` means a new stream). A snapshot, when due, is written in the same
transaction. ``get`` starts from the latest snapshot and replays the later events. The domain's
conventions lay out the events' metadata and the snapshots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from worker.errors import (
    AggregateNotFoundError,
    ExpectedVersionError,
    MalformedMessageError,
    MissingApplyError,
    VersionConflictError,
)
from worker.model.aggregate import BaseAggregate
from worker.model.event import event_metadata
from worker.model.snapshot import load_snapshot, snapshot_message, snapshot_stream
from worker.store import tracing
from worker.store.conventions import EVENTIDE
from worker.store.stream_name import stream

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import asyncpg

    from worker.model.event import BaseEvent
    from worker.store.conventions import Conventions
    from worker.store.message import Message, NewMessage
    from worker.store.message_store import MessageStore
    from worker.store.types import Connection

A = TypeVar("A", bound=BaseAggregate)


class Repository(Protocol[A]):
    """Loads and saves aggregates of one class (what ``domain.repository_for`` returns)."""

    async def add(
        self,
        aggregate: A,
        *,
        cause: Message | None = None,
        metadata: Mapping[str, Any] | None = None,
        conn: asyncpg.Connection[Any] | None = None,
    ) -> None:
        """Save the aggregate; ``VersionConflictError`` (nothing written) if it moved on.

        With ``conn`` the writes join the caller's transaction; the aggregate counts as saved
        when ``add`` returns, so after rolling that transaction back, load it again.
        """
        ...

    async def get(self, ident: str) -> A:
        """The aggregate with this id; ``AggregateNotFoundError`` if there is none."""
        ...


class EventSourcedRepository(Generic[A]):
    """The repository of an event-sourced aggregate class (see the module doc)."""

    def __init__(
        self,
        cls: type[A],
        store: MessageStore,
        *,
        decode: Callable[[Message], BaseEvent | None],
        snapshot_threshold: int,
        batch_size: int = 1000,
        conventions: Conventions = EVENTIDE,
    ) -> None:
        self.cls = cls
        self.store = store
        self.decode = decode
        self.default_threshold = snapshot_threshold
        self.batch_size = batch_size
        self.conventions = conventions

    def stream_name(self, ident: str) -> str:
        """``{category}-{id}``: where the aggregate's events live."""
        return stream(self.cls.__stream_category__, ident)

    @property
    def snapshot_threshold(self) -> int:
        """Events between snapshots: the aggregate's own setting, else the domain's."""
        return self.cls.__snapshot_threshold__ or self.default_threshold

    async def add(
        self,
        aggregate: A,
        *,
        cause: Message | None = None,
        metadata: Mapping[str, Any] | None = None,
        conn: asyncpg.Connection[Any] | None = None,
    ) -> None:
        """Write the pending events atomically, and a snapshot when one is due."""
        events = aggregate.pending_events
        if not events:
            return
        followed = event_metadata(cause, metadata)
        name, first = self.stream_name(aggregate.id), aggregate.stored_version
        messages = [
            event.to_message(
                followed,
                stream_name=name,
                cause=cause,
                position=first + i,
                expected_version=first + i - 1,
            )
            for i, event in enumerate(events)
        ]
        snapshot = aggregate.version - aggregate._snapshot_version >= self.snapshot_threshold
        attributes = self._attributes(name, len(messages), snapshot)
        with tracing.span(f"save {self.cls.__qualname__}", attributes):
            async with self.store.transaction(conn) as tx:
                await self._write(tx, aggregate, messages)
                if snapshot:
                    await self.store.write(
                        snapshot_stream(self.cls, aggregate.id, self.conventions),
                        snapshot_message(aggregate, self.conventions),
                        conn=tx,
                    )
        aggregate._saved(aggregate.version)
        if snapshot:
            aggregate._snapshot_version = aggregate.version

    async def _write(self, tx: Connection, aggregate: A, messages: list[NewMessage]) -> None:
        expected = aggregate.stored_version - 1
        name = self.stream_name(aggregate.id)
        try:
            await self.store.write_batch(name, messages, expected_version=expected, conn=tx)
        except ExpectedVersionError as error:
            raise VersionConflictError(
                self.cls.__qualname__, aggregate.id, aggregate.stored_version
            ) from error

    async def get(self, ident: str) -> A:
        """Latest snapshot (if any and valid) plus the events after it, through ``@apply``."""
        name = self.stream_name(ident)
        with tracing.span(f"load {self.cls.__qualname__}", {"worker.stream": name}) as span:
            aggregate = await self._load(ident, name, span)
        if aggregate.version == 0:
            raise AggregateNotFoundError(self.cls.__qualname__, ident)
        self._check_complete(aggregate)
        aggregate._stored_version = aggregate.version
        return aggregate

    async def _load(self, ident: str, name: str, span: Any) -> A:
        """The aggregate from its snapshot and later events (``span``: the load's, if traced)."""
        snapshot = await load_snapshot(self.store, self.cls, ident, self.conventions)
        aggregate = snapshot or self._blank(ident)
        events = 0
        async for message in self.store.iter_stream(name, aggregate.version, self.batch_size):
            aggregate._apply(self._decode(message))
            events += 1
        if span is not None:
            span.set_attributes(
                {
                    "worker.aggregate": self.cls.__qualname__,
                    "worker.aggregate.id": ident,
                    "worker.events": events,
                    "worker.snapshot": snapshot is not None,
                }
            )
        return aggregate

    def _attributes(self, stream_name: str, events: int, snapshot: bool) -> dict[str, Any]:
        """A save span's attributes."""
        return {
            "worker.aggregate": self.cls.__qualname__,
            "worker.stream": stream_name,
            "worker.events": events,
            "worker.snapshot": snapshot,
        }

    def _check_complete(self, aggregate: A) -> None:
        """Replay must set every required field (the creation event's ``@apply`` should)."""
        unset = [
            name
            for name, field in self.cls.model_fields.items()
            if field.is_required() and name not in aggregate.model_fields_set
        ]
        if unset:
            raise MissingApplyError(
                f"replaying {self.stream_name(aggregate.id)} left required field(s) of "
                f"{self.cls.__qualname__} unset: {', '.join(unset)}; an @apply method must set them"
            )

    def _blank(self, ident: str) -> A:
        """An unvalidated instance with only its id: replaying ``@apply`` methods fills it."""
        return cast("A", self.cls.model_construct(id=ident))

    def _decode(self, message: Message) -> BaseEvent:
        problem = self.conventions.check(message)
        if problem is not None:
            where = (message.stream_name, message.position, message.type)
            raise MalformedMessageError(*where, problem)
        event = self.decode(message)
        if event is None:
            raise MissingApplyError(
                f"{message.stream_name}@{message.position} holds type {message.type!r}, which "
                f"is no registered event, so {self.cls.__qualname__} cannot apply it"
            )
        return event
