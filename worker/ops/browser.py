"""The stream browser's views that need the application's code: a message with the schema
version it was stored at and what the current upcasters make of it, and an aggregate's
history with the state its events fold to. The store layer finds the messages
(``worker.store.browser``); the command line renders these views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.errors import MalformedMessageError, UsageError
from worker.store.layout import SchemaVersionError, metadata_object
from worker.store.protean import ProteanConventions
from worker.store.stream_name import stream

if TYPE_CHECKING:
    from worker.domain import Domain
    from worker.model.aggregate import BaseAggregate
    from worker.store.message import Message
    from worker.store.message_store import MessageStore

_PROTEAN = ProteanConventions()


def message_json(message: Message) -> dict[str, Any]:
    """A stored message as JSON: its fields, data and metadata decoded."""
    return {
        "global_position": message.global_position,
        "stream_name": message.stream_name,
        "position": message.position,
        "type": message.type,
        "id": message.id,
        "time": message.time.isoformat(),
        "data": message.data,
        "metadata": metadata_object(message.metadata_json) if message.metadata_json else None,
    }


@dataclass(frozen=True)
class MessageView:
    """One message as ``worker events show`` shows it: as stored, and as the current code reads
    it. ``stored_version`` is the schema version it was written at (``None`` when it states
    none and no class is registered for it); ``current_version`` the registered class's;
    ``upcast`` its data as the class reads it (after upcasting); ``error`` why it does not
    decode, if it does not."""

    message: dict[str, Any]
    event_class: str | None
    stored_version: int | None
    current_version: int | None
    upcast: dict[str, Any] | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.message,
            "event_class": self.event_class,
            "stored_version": self.stored_version,
            "current_version": self.current_version,
            "upcast": self.upcast,
            "error": self.error,
        }


def view(domain: Domain, message: Message) -> MessageView:
    """``message`` as stored and as ``domain``'s classes and upcasters read it."""
    cls = domain.event_class(message.type)
    error = None
    try:
        stored = _stored_version(domain, message, registered=cls is not None)
    except SchemaVersionError as problem:
        stored, error = None, str(problem)
    upcast = None
    if cls is not None and error is None:
        try:
            event = domain.decode(message)
            upcast = None if event is None else event.model_dump(mode="json")
        except MalformedMessageError as problem:
            error = str(problem)
    name = None if cls is None else cls.__qualname__
    current = None if cls is None else cls.__version__
    return MessageView(message_json(message), name, stored, current, upcast, error)


def _stored_version(domain: Domain, message: Message, *, registered: bool) -> int | None:
    """The schema version ``message`` was written at, by the domain's conventions (1 when a
    registered class's message states none); for an unregistered type, by Protean's too."""
    version = domain.schema_version(message)
    if version is None and not registered:
        version = _PROTEAN.schema_version(message.type, message.metadata_json)
    if version is None and registered:
        return 1
    return version


@dataclass(frozen=True)
class History:
    """An aggregate's stream, each event as the current code reads it, and the state the
    repository loads."""

    aggregate: str
    id: str
    stream_name: str
    events: list[MessageView]
    state: dict[str, Any]
    version: int

    def to_json(self) -> dict[str, Any]:
        return {
            "aggregate": self.aggregate,
            "id": self.id,
            "stream_name": self.stream_name,
            "events": [event.to_json() for event in self.events],
            "state": self.state,
            "version": self.version,
        }


def aggregate_class(domain: Domain, name: str) -> type[BaseAggregate]:
    """The aggregate class called ``name`` (its class name or stream category, in any case);
    ``UsageError`` naming the known ones otherwise."""
    wanted = name.lower()
    for cls in domain.aggregates:
        if wanted in (cls.__name__.lower(), cls.__stream_category__.lower()):
            return cls
    known = ", ".join(sorted(cls.__name__ for cls in domain.aggregates)) or "none"
    raise UsageError(f"no aggregate {name!r} in domain {domain.name!r} (known: {known})")


async def history(domain: Domain, store: MessageStore, name: str, ident: str) -> History:
    """The history of aggregate ``name`` ``ident``: its stream's events and the state its
    repository loads (``AggregateNotFoundError`` when there is no such aggregate)."""
    cls = aggregate_class(domain, name)
    loaded = await domain.repository_for(cls, store).get(ident)
    stream_name = stream(cls.__stream_category__, ident)
    events = [view(domain, m) async for m in store.iter_stream(stream_name)]
    state = loaded.model_dump(mode="json")
    return History(cls.__qualname__, ident, stream_name, events, state, loaded.version)
