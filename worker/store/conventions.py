"""Message conventions: how a domain names streams, types and ids, and lays out metadata.

Two are known, chosen per domain (``Domain(..., conventions="protean")`` or
``[domain] conventions``):

* ``eventide`` (the default): MessageDB/Eventide's own layout. Categories are the aggregate's
  snake-case name (``order``), types the class name (``OrderPlaced``), ids UUID4 hex, fact
  events in ``{category}:fact-{id}``, snapshots ``Snapshot`` messages of
  ``{"version": n, "state": {...}}``, and metadata Eventide's causation/correlation keys at
  its top level.
* ``protean``: Protean 0.18's layout, read and written. Categories ``<domain>::<aggregate>``,
  types ``<Domain>.<Event>.v<version>``, ids dashed UUID4s, fact events in
  ``{category}-fact-{id}`` (the aggregate's own category), snapshots ``SNAPSHOT`` messages of
  the aggregate's fields plus ``_version`` and no metadata, commands in
  ``{category}:command-{id}``, and Protean's metadata: ``headers`` (id, time, type, stream),
  ``envelope`` (spec version, SHA-256 checksum of the data), ``domain`` (fqn, kind, version,
  sequence, expected version, correlation and causation ids, ...), ``event_store`` and
  ``extensions``. Protean rejects any other top-level metadata key, so Eventide's keys (and
  metadata given by the caller) go into ``extensions``, which Protean keeps and hands on.

Everything here works on names, numbers and JSON: the layers above decide what they mean.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeGuard, get_args

from worker.store.message import NewMessage
from worker.store.metadata import SCHEMA_VERSION
from worker.store.stream_name import category as category_of
from worker.store.stream_name import stream, stream_id

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

    @abstractmethod
    def parse_type(self, type_name: str) -> ParsedType:
        """The registered name and the schema version a message type names."""

    def schema_version(self, type_name: str, metadata: Mapping[str, Any] | None) -> int | None:
        """The schema version of a message: from its type where the type names one, else from
        metadata ``schemaVersion``; ``None`` when neither says."""
        parsed = self.parse_type(type_name).version
        if parsed is not None:
            return parsed
        value = (metadata or {}).get(SCHEMA_VERSION)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

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


class EventideConventions(Conventions):
    """MessageDB/Eventide's layout (the default)."""

    name: ClassVar[ConventionsName] = "eventide"
    snapshot_type: ClassVar[str] = "Snapshot"

    def category(self, domain: str, aggregate: str, given: str | None = None) -> str:
        return given or snake_case(aggregate)

    def event_type(self, domain: str, event: str, version: int) -> str:
        return event

    def parse_type(self, type_name: str) -> ParsedType:
        return ParsedType(type_name, None)

    def fact_category(self, category: str) -> str:
        return f"{category}:fact"

    def fact_stream(self, category: str, ident: str) -> str:
        return stream(f"{category}:fact", ident)

    def snapshot_message(self, state: dict[str, Any], version: int) -> NewMessage:
        return NewMessage(self.snapshot_type, {"version": version, "state": state})

    def snapshot_of(self, message: Message) -> tuple[dict[str, Any], int]:
        data = message.data
        state, version = data.get("state"), data.get("version")
        if not isinstance(state, dict) or not _is_count(version) or version < 1:
            raise SnapshotLayoutError("expected {'version': n >= 1, 'state': {...}}")
        return state, version

    def metadata(
        self, out: Outgoing, followed: Mapping[str, Any] | None, cause: Message | None
    ) -> dict[str, Any] | None:
        metadata = dict(followed) if followed else {}
        if out.version != 1:  # version 1 is what a message without the key is read as
            metadata[SCHEMA_VERSION] = out.version
        return metadata or None


class ProteanConventions(Conventions):
    """Protean 0.18's layout (see the module doc)."""

    name: ClassVar[ConventionsName] = "protean"
    snapshot_type: ClassVar[str] = "SNAPSHOT"
    writes_expected_versions: ClassVar[bool] = True
    _TYPE = re.compile(r"^(?P<name>.+)\.v(?P<version>\d+)$")

    def category(self, domain: str, aggregate: str, given: str | None = None) -> str:
        # Protean prefixes the domain to a given stream_category too.
        return f"{normalized_name(domain)}::{given or underscore(aggregate)}"

    def event_type(self, domain: str, event: str, version: int) -> str:
        return f"{camel_case_name(domain)}.{event}.v{version}"

    def older_types(self, domain: str, event: str, version: int) -> tuple[str, ...]:
        return tuple(self.event_type(domain, event, v) for v in range(1, version))

    def parse_type(self, type_name: str) -> ParsedType:
        match = self._TYPE.match(type_name)
        if match is None:
            return ParsedType(type_name, None)
        return ParsedType(match["name"], int(match["version"]))

    def schema_version(self, type_name: str, metadata: Mapping[str, Any] | None) -> int | None:
        parsed = self.parse_type(type_name).version
        if parsed is not None:
            return parsed
        domain = (metadata or {}).get("domain")
        value = domain.get("version") if isinstance(domain, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def id_factory(self) -> Callable[[], str] | None:
        return dashed_id

    def fact_category(self, category: str) -> str:
        return category

    def fact_stream(self, category: str, ident: str) -> str:
        return stream(category, f"fact-{ident}")

    def snapshot_message(self, state: dict[str, Any], version: int) -> NewMessage:
        # Protean's aggregate.to_dict(): the fields, and ``_version``, the stream position of
        # the last event applied. No metadata, as Protean writes it.
        return NewMessage(self.snapshot_type, {**state, "_version": version - 1})

    def snapshot_of(self, message: Message) -> tuple[dict[str, Any], int]:
        state = message.data
        position = state.pop("_version", None)
        if not _is_count(position):
            raise SnapshotLayoutError("expected the aggregate's fields and '_version' >= 0")
        return state, position + 1

    def metadata(
        self, out: Outgoing, followed: Mapping[str, Any] | None, cause: Message | None
    ) -> dict[str, Any] | None:
        stream_name = out.stream_name
        if stream_name is None:
            raise ValueError(f"{out.type_name}: Protean's metadata names the stream; give one")
        command = is_command_stream(stream_name)
        parent = (cause.metadata or {}) if cause is not None else {}
        parent_headers = _block(parent, "headers")
        parent_domain = _block(parent, "domain")
        correlation = parent_domain.get("correlation_id")
        causation = None
        origin = None
        deadline = None
        if cause is not None:
            causation = parent_headers.get("id") or f"{cause.stream_name}-{cause.position}"
            cause_kind = parent_domain.get("kind") or (
                "COMMAND" if is_command_stream(cause.stream_name) else "EVENT"
            )
            if command and cause_kind == "EVENT":
                origin = parent_headers.get("stream") or cause.stream_name
            elif not command and cause_kind == "COMMAND":
                origin = parent_domain.get("origin_stream")
            if command:
                deadline = parent_headers.get("deadline")
        if command:
            # Protean names a command's stream after its id (the command's identifier field,
            # or a fresh UUID) and records no sequence, expected version or category.
            ident: str = stream_id(stream_name) or out.message_id
            sequence = expected = stream_category = None
            correlation = correlation or uuid.uuid4().hex
        else:
            sequence = out.sequence or (None if out.position is None else str(out.position))
            ident = out.message_id if sequence is None else f"{stream_name}-{sequence}"
            expected = out.expected_version
            stream_category = category_of(stream_name)
        return {
            "headers": {
                "id": ident,
                "time": datetime.now(UTC).isoformat(),
                "type": out.type_name,
                "stream": stream_name,
                "traceparent": None,
                "idempotency_key": None,
                "deadline": deadline,
            },
            "envelope": {"specversion": "1.0", "checksum": checksum(out.data)},
            "domain": {
                "fqn": out.fqn,
                "kind": "COMMAND" if command else "EVENT",
                "origin_stream": origin,
                "stream_category": stream_category,
                "version": out.version,
                "sequence_id": sequence,
                "asynchronous": True,
                "expected_version": expected,
                "priority": 0,
                "correlation_id": correlation,
                "causation_id": causation,
            },
            "event_store": None,
            "extensions": dict(followed or {}),
        }

    def check(self, message: Message) -> str | None:
        envelope = _block(message.metadata or {}, "envelope")
        stored = envelope.get("checksum")
        if not stored:
            return None  # Protean verifies only messages that carry a checksum
        computed = checksum(json.loads(message.data_json))
        if computed != stored:
            return f"envelope checksum {stored} does not match the data's ({computed})"
        return None


def dashed_id() -> str:
    """A fresh UUID4 with dashes: Protean's default identity."""
    return str(uuid.uuid4())


def _hex_id() -> str:
    return uuid.uuid4().hex


def checksum(data: Mapping[str, Any]) -> str:
    """Protean's envelope checksum: SHA-256 of the data as ``json.dumps`` writes it with sorted
    keys and no spaces (non-ASCII escaped, as the standard library does by default)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _block(metadata: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = metadata.get(key)
    return value if isinstance(value, dict) else {}


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


EVENTIDE: Conventions = EventideConventions()
PROTEAN: Conventions = ProteanConventions()
_BY_NAME: dict[str, Conventions] = {c.name: c for c in (EVENTIDE, PROTEAN)}


def conventions_named(name: str | Conventions) -> Conventions:
    """The conventions called ``name`` (``eventide`` or ``protean``)."""
    if isinstance(name, Conventions):
        return name
    found = _BY_NAME.get(name)
    if found is None:
        raise ValueError(f"unknown conventions {name!r}: expected one of {', '.join(NAMES)}")
    return found


# -- names: this package's snake case, and Protean's (the ``inflection`` rules it uses) -------


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


def transliterate(text: str) -> str:
    """Non-ASCII characters as their ASCII approximation, or dropped (``inflection``)."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def underscore(word: str) -> str:
    """``DeviceType`` -> ``device_type`` (``inflection.underscore``: Protean's category)."""
    word = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", word)
    word = re.sub(r"([a-z\d])([A-Z])", r"\1_\2", word)
    return word.replace("-", "_").lower()


def parameterize(text: str, separator: str = "-") -> str:
    """``Donald E. Knuth`` -> ``donald-e-knuth`` (``inflection.parameterize``)."""
    text = re.sub(r"(?i)[^a-z0-9\-_]+", separator, transliterate(text))
    sep = re.escape(separator)
    text = re.sub(rf"{sep}{{2,}}", separator, text)
    text = re.sub(rf"(?i)^{sep}|{sep}$", "", text)
    return text.lower()


def humanize(word: str) -> str:
    """``employee_salary`` -> ``Employee salary``; a trailing ``_id`` goes (``inflection``)."""
    word = re.sub(r"_id$", "", word).replace("_", " ")
    word = re.sub(r"(?i)([a-z\d]*)", lambda m: m.group(1).lower(), word)
    return re.sub(r"^\w", lambda m: m.group(0).upper(), word)


def titleize(word: str) -> str:
    """``raiders_of_the_lost_ark`` -> ``Raiders Of The Lost Ark`` (``inflection.titleize``)."""
    return re.sub(
        r"\b('?\w)", lambda m: m.group(1).capitalize(), humanize(underscore(word)).title()
    )


def camel_case_name(domain: str) -> str:
    """Protean's ``Domain.camel_case_name``: ``my_domain`` -> ``MyDomain``, the first part of
    its type names."""
    return "".join(filter(str.isalnum, titleize(transliterate(domain).replace("-", " "))))


def normalized_name(domain: str) -> str:
    """Protean's ``Domain.normalized_name``: ``My Domain`` -> ``my_domain``, the first part of
    its categories."""
    return underscore(parameterize(transliterate(domain)))
