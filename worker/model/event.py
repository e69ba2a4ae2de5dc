"""Events: pydantic models with a MessageDB type name and aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from worker.errors import MalformedMessageError
from worker.store.message import NewMessage
from worker.store.metadata import follow

if TYPE_CHECKING:
    from collections.abc import Mapping

    from worker.store.message import Message


class BaseEvent(BaseModel):
    """Base of every event. Immutable; validated by pydantic on creation and on decoding.

    ``__type_name__`` is the MessageDB ``type`` written for this class (the class name unless the
    ``@domain.event`` decorator says otherwise); ``__aliases__`` are other type names that decode
    into this class (names written by Eventide, Protean's ``Domain.Event.v1`` form, or older
    versions of the class).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    __type_name__: ClassVar[str] = ""
    __aliases__: ClassVar[tuple[str, ...]] = ()
    __category__: ClassVar[str | None] = None

    @classmethod
    def type_name(cls) -> str:
        """The MessageDB type this class is written as."""
        return cls.__type_name__ or cls.__name__

    def to_message(self, metadata: Mapping[str, Any] | None = None) -> NewMessage:
        """This event as a message to write, data in JSON form."""
        return NewMessage(
            type=self.type_name(),
            data=self.model_dump(mode="json"),
            metadata=dict(metadata) if metadata else None,
        )


class EventRegistry(Protocol):
    """Where an aggregate finds the event classes of its domain (a ``Domain``)."""

    @property
    def events(self) -> tuple[type[BaseEvent], ...]: ...


def event_metadata(
    cause: Message | None, metadata: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Causation/correlation metadata following ``cause`` (Eventide keys), plus ``metadata``."""
    merged = follow(cause) if cause is not None else {}
    merged.update(metadata or {})
    return merged or None


def to_messages(events: tuple[BaseEvent, ...], metadata: dict[str, Any] | None) -> list[NewMessage]:
    """The events as messages to write, each with the same metadata."""
    return [event.to_message(metadata) for event in events]


def malformed(message: Message, error: ValidationError) -> MalformedMessageError:
    """A message whose data does not validate against its event class: which fields, and why."""
    detail = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '<data>'}: {e['msg']}" for e in error.errors()
    )
    return MalformedMessageError(message.stream_name, message.position, message.type, detail)
