"""Protean 0.18's message conventions, read and written (see ``worker.store.conventions``):
its names (domain and aggregate names as Protean normalizes them), its metadata envelope with
the data's SHA-256 checksum, dashed UUID ids, fact events and snapshots."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from worker.store.message import NewMessage
from worker.store.stream_name import category as category_of
from worker.store.stream_name import stream, stream_id

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from worker.store.message import Message


from worker.store.layout import (
    Conventions,
    ConventionsName,
    Outgoing,
    ParsedType,
    SnapshotLayoutError,
    _is_count,
    is_command_stream,
    metadata_object,
    version_in,
)


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

    def newer_types(self, type_name: str, versions: int) -> tuple[str, ...]:
        parsed = self.parse_type(type_name)
        if parsed.version is None:
            return ()
        start = parsed.version + 1
        return tuple(f"{parsed.name}.v{v}" for v in range(start, start + versions))

    def parse_type(self, type_name: str) -> ParsedType:
        match = self._TYPE.match(type_name)
        if match is None:
            return ParsedType(type_name, None)
        return ParsedType(match["name"], int(match["version"]))

    def schema_version(self, type_name: str, metadata_json: str | None) -> int | None:
        parsed = self.parse_type(type_name).version
        if parsed is not None:
            return parsed
        domain = metadata_object(metadata_json).get("domain")
        return version_in(domain, "version", "domain.version") if isinstance(domain, dict) else None

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


def checksum(data: Mapping[str, Any]) -> str:
    """Protean's envelope checksum: SHA-256 of the data as ``json.dumps`` writes it with sorted
    keys and no spaces (non-ASCII escaped, as the standard library does by default)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _block(metadata: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = metadata.get(key)
    return value if isinstance(value, dict) else {}


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
