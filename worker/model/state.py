"""State aggregates and fact events: state in PostgreSQL, a ``<Name>FactEvent`` on every save.

An aggregate that is not event-sourced keeps its current state as one row of
``worker.aggregate_state`` with its own optimistic version (1 after the first save). With
``fact_events=True`` each save also writes a ``<Name>FactEvent`` holding the full state to the
fact stream (``{category}:fact-{id}``; Protean's conventions: ``{category}-fact-{id}``) at stream
position ``version - 1``; domain events the aggregate raised go to ``{category}-{id}``. State, fact
event and domain events commit in one transaction, or none do.

In Protean's layout each message of a save carries the sequence id ``"{version - 1}.{n}"`` (``n``
counts the save's messages from 1, the fact event last), as Protean numbers the events of an
aggregate that is not event-sourced; domain events record the stream version they follow, and
are written before the fact event, as Protean writes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import create_model

from worker.errors import AggregateNotFoundError, ExpectedVersionError, VersionConflictError
from worker.model import queries as q
from worker.model.aggregate import BaseAggregate
from worker.model.event import BaseEvent, event_metadata
from worker.store import tracing
from worker.store.conventions import EVENTIDE
from worker.store.stream_name import stream

if TYPE_CHECKING:
    from collections.abc import Mapping

    import asyncpg

    from worker.store.conventions import Conventions
    from worker.store.message import Message, NewMessage
    from worker.store.message_store import MessageStore
    from worker.store.types import Connection

A = TypeVar("A", bound=BaseAggregate)


def fact_event_class(cls: type[BaseAggregate]) -> type[BaseEvent]:
    """``<Name>FactEvent``: an event with every field of ``cls`` (same types and validation)."""
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in cls.model_fields.items()
    }
    event: type[BaseEvent] = create_model(
        f"{cls.__name__}FactEvent",
        __base__=BaseEvent,
        __module__=cls.__module__,
        __doc__=f"The full state of a {cls.__name__} after a save.",
        **fields,
    )
    return event


def fact_stream(cls: type[BaseAggregate], ident: str, conventions: Conventions = EVENTIDE) -> str:
    """``{category}:fact-{id}``: fact events in a category of their own (Protean's conventions:
    ``{category}-fact-{id}``, in the aggregate's category)."""
    return conventions.fact_stream(cls.__stream_category__, ident)


class StateRepository(Generic[A]):
    """The repository of an aggregate that is not event-sourced (see the module doc)."""

    def __init__(
        self, cls: type[A], store: MessageStore, *, conventions: Conventions = EVENTIDE
    ) -> None:
        self.cls = cls
        self.store = store
        self.conventions = conventions

    async def add(
        self,
        aggregate: A,
        *,
        cause: Message | None = None,
        metadata: Mapping[str, Any] | None = None,
        conn: asyncpg.Connection[Any] | None = None,
    ) -> None:
        """Save state (and fact event, and raised events) atomically, or raise a conflict."""
        meta = event_metadata(cause, metadata)
        attributes = {
            "worker.aggregate": self.cls.__qualname__,
            "worker.aggregate.id": aggregate.id,
            "worker.events": len(aggregate.pending_events),
            "worker.fact_event": self.cls.__fact_events__,
        }
        with tracing.span(f"save {self.cls.__qualname__}", attributes):
            async with self.store.transaction(conn) as tx:
                version = await self._save(tx, aggregate, meta, cause)
        aggregate._saved(version)

    async def _save(
        self, tx: Connection, aggregate: A, meta: dict[str, Any] | None, cause: Message | None
    ) -> int:
        """The state row, the fact event and the raised events, in ``tx``; the new version."""
        version = await self._save_state(tx, aggregate)
        events = aggregate.pending_events
        fact_last = self.conventions.writes_expected_versions  # Protean's order
        if events and fact_last:
            await self._write_events(tx, aggregate, meta, cause, version)
        if self.cls.__fact_events__:
            sequence = f"{version - 1}.{len(events) + 1}"
            await self._write_fact(tx, aggregate, meta, cause, sequence)
        if events and not fact_last:
            await self._write_events(tx, aggregate, meta, cause, version)
        return version

    async def _write_events(
        self,
        tx: Connection,
        aggregate: A,
        meta: dict[str, Any] | None,
        cause: Message | None,
        version: int,
    ) -> None:
        """The domain events the aggregate raised, to ``{category}-{id}``."""
        name = stream(self.cls.__stream_category__, aggregate.id)
        expected = None
        if self.conventions.writes_expected_versions:
            # Protean records the stream version each event follows; the state row's lock,
            # taken above, keeps other saves of this aggregate out until the commit.
            current = await self.store.stream_version(name, conn=tx)
            expected = -1 if current is None else current
        messages: list[NewMessage] = [
            event.to_message(
                meta,
                stream_name=name,
                cause=cause,
                sequence=f"{version - 1}.{n}",
                expected_version=None if expected is None else expected + n - 1,
            )
            for n, event in enumerate(aggregate.pending_events, 1)
        ]
        await self.store.write_batch(name, messages, expected_version=expected, conn=tx)

    async def _save_state(self, tx: Connection, aggregate: A) -> int:
        key = (self.cls.__stream_category__, aggregate.id, aggregate.model_dump(mode="json"))
        if aggregate.stored_version == 0:
            version = await tx.fetchval(q.INSERT_STATE, *key)
        else:
            version = await tx.fetchval(q.UPDATE_STATE, *key, aggregate.stored_version)
        if version is None:
            raise self._conflict(aggregate)
        return int(version)

    async def _write_fact(
        self,
        tx: Connection,
        aggregate: A,
        meta: dict[str, Any] | None,
        cause: Message | None,
        sequence: str,
    ) -> None:
        fact = self.cls.FactEvent.model_validate(aggregate.model_dump())
        expected = aggregate.stored_version - 1
        name = fact_stream(self.cls, aggregate.id, self.conventions)
        message = fact.to_message(meta, stream_name=name, cause=cause, sequence=sequence)
        try:
            await self.store.write(name, message, expected_version=expected, conn=tx)
        except ExpectedVersionError as error:
            raise self._conflict(aggregate) from error

    def _conflict(self, aggregate: A) -> VersionConflictError:
        return VersionConflictError(self.cls.__qualname__, aggregate.id, aggregate.stored_version)

    async def get(self, ident: str) -> A:
        """The aggregate from its state row; ``AggregateNotFoundError`` if it was never saved."""
        row = await self.store.executor.fetchrow(
            q.SELECT_STATE, self.cls.__stream_category__, ident
        )
        if row is None:
            raise AggregateNotFoundError(self.cls.__qualname__, ident)
        aggregate = self.cls.model_validate(row["state"])
        aggregate._saved(int(row["version"]))
        return aggregate
