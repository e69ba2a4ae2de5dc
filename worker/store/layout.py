"""What every message convention decides, and the names and helpers they share (the
conventions themselves: ``worker.store.conventions``)."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeGuard, get_args

import orjson

from worker.store.message import NewMessage
from worker.store.metadata import SCHEMA_VERSION
from worker.store.stream_name import category as category_of
from worker.store.stream_name import stream

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from worker.store.message import Message

ConventionsName = Literal["eventide", "protean"]
NAMES: tuple[str, ...] = get_args(ConventionsName)


class SnapshotLayoutError(ValueError):
    """A snapshot message that is not laid out as the conventions write them."""


@dataclass(frozen=True, slots=True)
class ParsedType:
    """A message type taken apart: the name its class is registered under, and the schema
    version the type itself names (``None`` when it names none: Eventide's plain names)."""

    name: str
    version: int | None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What a message about to be written is, as far as its metadata is concerned.

    ``position`` is its stream position when known before the write (an aggregate's events);
    ``sequence`` Protean's sequence id when it is not the position (``"{version}.{n}"`` of an
    aggregate that is not event-sourced); ``expected_version`` the stream version the write
    expects, as Protean records it.
    """

    type_name: str
    data: dict[str, Any]
    stream_name: str | None
    fqn: str
    version: int
    message_id: str
    position: int | None = None
    sequence: str | None = None
    expected_version: int | None = None


def is_command_stream(stream_name: str) -> bool:
    """True for a stream of a command category (``{category}:command-{id}``): Eventide's rule,
    and Protean's."""
    return category_of(stream_name).endswith(":command")


class Conventions(ABC):
    """What a domain's messages look like (see the module doc)."""

    name: ClassVar[ConventionsName]
    snapshot_type: ClassVar[str]
    # Every event records the stream version it follows and is written expecting it (and the
    # domain events of a save go before its fact event): Protean's way.
    writes_expected_versions: ClassVar[bool] = False

    # -- names -------------------------------------------------------------------------------

    @abstractmethod
    def category(self, domain: str, aggregate: str, given: str | None = None) -> str:
        """The stream category of aggregate class ``aggregate`` (``given``: the category named
        at registration) in domain ``domain``."""

    @abstractmethod
    def event_type(self, domain: str, event: str, version: int) -> str:
        """The message type of event (or command) class ``event`` at schema ``version``."""

    def older_types(self, domain: str, event: str, version: int) -> tuple[str, ...]:
        """The types earlier schema versions of the class were written as, when they differ
        from the current one (every one of them decodes into the class)."""
        return ()

    def newer_types(self, type_name: str, versions: int) -> tuple[str, ...]:
        """The types the next ``versions`` schema versions of the class now written as
        ``type_name`` would be written as, where a type names its version (Protean's): a reader
        meeting one is older than the writer. None where types name no version."""
        return ()

    @abstractmethod
    def parse_type(self, type_name: str) -> ParsedType:
        """The registered name and the schema version a message type names."""

    def schema_version(self, type_name: str, metadata_json: str | None) -> int | None:
        """The schema version of a message (its type and its metadata as stored, JSON text):
        from its type where the type names one, else from metadata ``schemaVersion``; ``None``
        when neither says."""
        parsed = self.parse_type(type_name).version
        if parsed is not None:
            return parsed
        return version_in(metadata_object(metadata_json), SCHEMA_VERSION)

    @property
    def id_factory(self) -> Callable[[], str] | None:
        """What makes fresh aggregate and entity ids; ``None``: the entity's default (UUID4
        hex)."""
        return None

    def new_id(self) -> str:
        """A fresh aggregate or entity id."""
        return (self.id_factory or _hex_id)()

    @abstractmethod
    def fact_category(self, category: str) -> str:
        """The category the fact events of an aggregate in ``category`` are read from."""

    @abstractmethod
    def fact_stream(self, category: str, ident: str) -> str:
        """The stream of the fact events of aggregate ``ident`` of ``category``."""

    def snapshot_stream(self, category: str, ident: str) -> str:
        """``{category}:snapshot-{id}``: snapshots in a category of their own (both layouts)."""
        return stream(f"{category}:snapshot", ident)

    def command_category(self, category: str) -> str:
        """``{category}:command``: where commands to an aggregate's category go (both)."""
        return f"{category}:command"

    # -- snapshots ---------------------------------------------------------------------------

    @abstractmethod
    def snapshot_message(self, state: dict[str, Any], version: int) -> NewMessage:
        """A snapshot of an aggregate whose fields are ``state``, at ``version`` (events
        applied)."""

    @abstractmethod
    def snapshot_of(self, message: Message) -> tuple[dict[str, Any], int]:
        """The fields and version a snapshot message holds; ``SnapshotLayoutError`` if it is
        not laid out as a snapshot."""

    # -- metadata ----------------------------------------------------------------------------

    def message(
        self, out: Outgoing, followed: Mapping[str, Any] | None, cause: Message | None
    ) -> NewMessage:
        """``out`` as a message to write, with its metadata laid out (``metadata``)."""
        metadata = self.metadata(out, followed, cause)
        return NewMessage(out.type_name, out.data, metadata, out.message_id)

    @abstractmethod
    def metadata(
        self, out: Outgoing, followed: Mapping[str, Any] | None, cause: Message | None
    ) -> dict[str, Any] | None:
        """The metadata of ``out``: ``followed`` holds Eventide's keys following ``cause`` (if
        any) and the caller's own metadata."""

    def check(self, message: Message) -> str | None:
        """What is wrong with a message's envelope (a checksum that does not match), if
        anything."""
        return None

    def __repr__(self) -> str:
        return f"<{self.name} conventions>"


def _hex_id() -> str:
    return uuid.uuid4().hex


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def snake_case(name: str) -> str:
    """``OrderItem`` -> ``order_item``: the default stream category of an aggregate."""
    out: list[str] = []
    for i, char in enumerate(name):
        if (
            char.isupper()
            and i
            and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower()))
        ):
            out.append("_")
        out.append(char.lower())
    return "".join(out)


def metadata_object(metadata_json: str | None) -> dict[str, Any]:
    """Stored metadata decoded; ``{}`` when there is none or it is not a JSON object."""
    value = orjson.loads(metadata_json) if metadata_json is not None else None
    return value if isinstance(value, dict) else {}


class SchemaVersionError(ValueError):
    """A message's schema version that is present but no positive integer: the message cannot
    be read (which version its data is at is unknown)."""


def version_in(holder: Mapping[str, Any], key: str, name: str = SCHEMA_VERSION) -> int | None:
    """The schema version ``holder[key]`` states (``name`` in the error); ``None`` when the key
    is absent; ``SchemaVersionError`` when it holds no positive integer (``null`` included)."""
    if key not in holder:
        return None
    value = holder[key]
    version = version_number(value)
    if version is None:
        raise SchemaVersionError(f"{name} {value!r:.40} is not a positive integer")
    return version


def version_number(value: Any) -> int | None:
    """A schema version as metadata holds it: a positive integer, or its digits as a string
    (as some Eventide-style writers store it); ``None`` for anything else."""
    if type(value) is int:  # not isinstance: a bool is no version
        return value if value > 0 else None
    if type(value) is str and value.isascii() and value.isdigit():
        return int(value) or None
    return None
