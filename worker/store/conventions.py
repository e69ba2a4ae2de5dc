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

from typing import TYPE_CHECKING, Any, ClassVar

from worker.store.message import NewMessage
from worker.store.metadata import SCHEMA_VERSION
from worker.store.stream_name import stream

if TYPE_CHECKING:
    from collections.abc import Mapping

    from worker.store.message import Message


from worker.store.layout import (
    NAMES,
    Conventions,
    ConventionsName,
    Outgoing,
    ParsedType,
    SchemaVersionError,
    SnapshotLayoutError,
    _is_count,
    is_command_stream,
    metadata_object,
    snake_case,
    version_in,
    version_number,
)
from worker.store.protean import ProteanConventions, camel_case_name, dashed_id, normalized_name

__all__ = [
    "EVENTIDE",
    "NAMES",
    "PROTEAN",
    "Conventions",
    "ConventionsName",
    "EventideConventions",
    "Outgoing",
    "ParsedType",
    "ProteanConventions",
    "SchemaVersionError",
    "SnapshotLayoutError",
    "camel_case_name",
    "conventions_named",
    "dashed_id",
    "is_command_stream",
    "normalized_name",
    "snake_case",
]


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

    def schema_version(self, type_name: str, metadata_json: str | None) -> int | None:
        # Types name no version here: only metadata does, and most metadata names none (the
        # hot path of every message of a class past version 1), so it is decoded only then.
        if metadata_json is None or SCHEMA_VERSION not in metadata_json:
            return None
        metadata = metadata_object(metadata_json)
        version = version_number(metadata.get(SCHEMA_VERSION))
        if version is None:  # (``version_in``, inline)
            return version_in(metadata, SCHEMA_VERSION)
        return version

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
