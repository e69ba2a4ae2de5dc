"""Events: pydantic models with a MessageDB type name, aliases and a schema version.

An event class has a schema version (``__version__``, 1 unless declared). A message records the
version its data was written at in metadata ``schemaVersion`` (MessageDB/Eventide's key; left
out for version 1). Upcasters (``@domain.upcaster(Event, from_version=n)``) turn a stored
payload of version n into n+1; ``decode`` runs the chain from the message's version to the
class's wherever a stored message becomes an event. Stored messages are never rewritten.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeAlias

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from worker.errors import MalformedMessageError, RegistrationError
from worker.store.conventions import EVENTIDE, Outgoing, SchemaVersionError
from worker.store.metadata import follow

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from worker.store.conventions import Conventions
    from worker.store.message import Message, NewMessage


class BaseEvent(BaseModel):
    """Base of every event. Immutable; validated by pydantic on creation and on decoding.

    ``__type_name__`` is the MessageDB ``type`` written for this class (the class name unless the
    ``@domain.event`` decorator says otherwise); ``__aliases__`` are other type names that decode
    into this class (names written by Eventide, Protean's ``Domain.Event.v1`` form, or older
    versions of the class). ``__conventions__`` are those of the domain that registered it: they
    lay out the metadata of the messages it is written as.
    """

    # Payload values (ids, names) rarely repeat: only the keys are worth caching while parsing.
    model_config = ConfigDict(frozen=True, extra="ignore", cache_strings="keys")

    __type_name__: ClassVar[str] = ""
    __aliases__: ClassVar[tuple[str, ...]] = ()
    __category__: ClassVar[str | None] = None
    __version__: ClassVar[int] = 1
    __upcasters__: ClassVar[dict[int, Upcaster]] = {}  # from version n to n + 1
    __conventions__: ClassVar[Conventions | None] = None
    # ``decode``'s decoder, with the conventions and upcasters it was made from.
    __decoder__: ClassVar[tuple[Any, Any, Callable[[Message], BaseEvent]] | None] = None

    @classmethod
    def type_name(cls) -> str:
        """The MessageDB type this class is written as."""
        return cls.__type_name__ or cls.__name__

    def to_message(
        self,
        metadata: Mapping[str, Any] | None = None,
        *,
        stream_name: str | None = None,
        cause: Message | None = None,
        id: str | None = None,
        position: int | None = None,
        sequence: str | None = None,
        expected_version: int | None = None,
    ) -> NewMessage:
        """This event as a message to write (to ``stream_name``), data in JSON form.

        ``metadata`` holds Eventide's keys following ``cause`` and the caller's own; the
        conventions of the class's domain lay it out (see ``Conventions.message``).
        """
        cls = type(self)
        layout = cls.__conventions__ or EVENTIDE
        out = Outgoing(
            cls.type_name(),
            self.model_dump(mode="json"),
            stream_name,
            f"{cls.__module__}.{cls.__qualname__}",
            getattr(cls, "__version__", 1),
            id or str(uuid.uuid4()),
            position,
            sequence,
            expected_version,
        )
        return layout.message(out, metadata, cause)


Upcaster: TypeAlias = "Callable[[dict[str, Any]], dict[str, Any]]"


def schema_version(message: Message, cls: type[BaseEvent] | None = None) -> int:
    """The schema version a message's data was written at, as the conventions of ``cls``'s
    domain say (Eventide: metadata ``schemaVersion``; Protean: the type's ``.v<n>``), else 1;
    ``SchemaVersionError`` when it states one that is no positive integer."""
    layout = (cls.__conventions__ if cls is not None else None) or EVENTIDE
    return layout.schema_version(message[2], message[6]) or 1


def add_upcaster(event: type[BaseEvent], from_version: int, upcast: Upcaster) -> Upcaster:
    """Give ``event`` the upcaster from ``from_version`` to the next (what
    ``@domain.upcaster`` does); ``RegistrationError`` for a step it has not, or has already."""
    name = f"upcaster {getattr(upcast, '__qualname__', upcast)!s} of {event.__qualname__}"
    if not 1 <= from_version < event.__version__:
        raise RegistrationError(
            f"{name} from version {from_version}: {event.__qualname__} is at version "
            f"{event.__version__}, so its upcasters start at 1 .. {event.__version__ - 1}"
        )
    steps = dict(event.__dict__.get("__upcasters__", {}))
    if from_version in steps:
        raise RegistrationError(f"{name}: version {from_version} has an upcaster already")
    steps[from_version] = upcast
    event.__upcasters__ = steps
    return upcast


def upcaster_gaps(cls: type[BaseEvent]) -> list[int]:
    """The versions below the class's own that have no upcaster."""
    steps = cls.__dict__.get("__upcasters__", {})
    return [v for v in range(1, cls.__version__) if v not in steps]


def needs_upcasting(cls: type[BaseEvent]) -> bool:
    """True when stored messages of ``cls`` may be at an older schema version."""
    return cls.__version__ > 1


def decode(cls: type[BaseEvent], message: Message) -> BaseEvent:
    """The message's data as an instance of ``cls``, upcast from the version it was written at.

    Data that does not validate, a schema version that is no positive integer or is newer than
    the class's, a missing upcaster or one that raises: ``MalformedMessageError`` (permanent for
    that message, which is never half-read).
    """
    try:
        return _decoder_of(cls)(message)
    except ValidationError as error:
        raise malformed(message, error) from None


def _decoder_of(cls: type[BaseEvent]) -> Callable[[Message], BaseEvent]:
    """The class's decoder, made again only when its conventions or upcasters changed (a
    repository load decodes every event of a stream)."""
    cached = cls.__dict__.get("__decoder__")
    if cached is not None and cached[0] is cls.__conventions__ and cached[1] is cls.__upcasters__:
        made: Callable[[Message], BaseEvent] = cached[2]
        return made
    made = decoder(cls)
    cls.__decoder__ = (cls.__conventions__, cls.__upcasters__, made)
    return made


def decoder(cls: type[BaseEvent]) -> Callable[[Message], BaseEvent]:
    """``decode`` for one class, made once its domain is complete (its conventions and
    upcasters are taken as they are now): the engine's path for a class past version 1, except
    that data that does not validate raises pydantic's ``ValidationError`` (the engine
    names the message itself). A current payload is validated straight from its JSON, an
    upcast one as the Python objects its upcasters return.
    """
    validator = cls.__pydantic_validator__
    from_json, from_python = validator.validate_json, validator.validate_python
    current = cls.__version__
    version_of = (cls.__conventions__ or EVENTIDE).schema_version
    steps = cls.__upcasters__

    def decode_one(message: Message) -> BaseEvent:
        try:
            version = version_of(message[2], message[6]) or 1
        except SchemaVersionError as error:
            raise _malformed(message, str(error)) from None
        if version == current:
            event: BaseEvent = from_json(message[5] or "{}")
            return event
        if version > current:
            detail = f"written at schema version {version}, newer than {cls.__qualname__}'s"
            raise _malformed(message, f"{detail} ({current})")
        data = orjson.loads(message[5] or "{}")
        for step in range(version, current):
            upcast = steps.get(step)
            if upcast is None:
                raise _malformed(message, f"no upcaster of {cls.__qualname__} from version {step}")
            try:
                data = upcast(data)
            except Exception as error:
                raise _upcaster_failed(cls, upcast, step, error, message) from error
        event = from_python(data)
        return event

    return decode_one


def _upcaster_failed(
    cls: type[BaseEvent], upcast: Upcaster, step: int, error: Exception, message: Message
) -> MalformedMessageError:
    """An upcaster that raised makes its message malformed: no retry can help, as an upcaster
    is a pure function of the stored payload."""
    name = getattr(upcast, "__name__", repr(upcast))
    detail = f"upcaster {name} of {cls.__qualname__} from version {step} to {step + 1}"
    said = " ".join(str(error).split())  # one line, whatever the error's text
    return _malformed(message, f"{detail} raised {type(error).__name__}: {said}")


def _malformed(message: Message, detail: str) -> MalformedMessageError:
    return MalformedMessageError(message.stream_name, message.position, message.type, detail)


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


def malformed(message: Message, error: ValidationError) -> MalformedMessageError:
    """A message whose data does not validate against its event class: which fields, and why."""
    detail = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '<data>'}: {e['msg']}" for e in error.errors()
    )
    return MalformedMessageError(message.stream_name, message.position, message.type, detail)
