"""Message metadata with MessageDB/Eventide's own keys, so other clients can read it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from worker.store.message import Message

log = structlog.get_logger(__name__)

CORRELATION_STREAM_NAME = "correlationStreamName"
CAUSATION_STREAM_NAME = "causationMessageStreamName"
CAUSATION_POSITION = "causationMessagePosition"
CAUSATION_GLOBAL_POSITION = "causationMessageGlobalPosition"
REPLY_STREAM_NAME = "replyStreamName"
SCHEMA_VERSION = "schemaVersion"


def follow(cause: Message, **extra: Any) -> dict[str, Any]:
    """Metadata for a message caused by ``cause``, as Eventide's ``follow`` writes it.

    Causation points at ``cause``; correlation and reply stream are carried over from it (from
    the top level of its metadata, or, in Protean's layout, from its ``extensions``).
    Metadata of ``cause`` that is valid JSON but no object counts as absent (with a warning).
    """
    metadata: dict[str, Any] = {
        CAUSATION_STREAM_NAME: cause.stream_name,
        CAUSATION_POSITION: cause.position,
        CAUSATION_GLOBAL_POSITION: cause.global_position,
    }
    previous = _previous(cause)
    extensions = previous.get("extensions")
    for key in (CORRELATION_STREAM_NAME, REPLY_STREAM_NAME):
        if previous.get(key) is not None:
            metadata[key] = previous[key]
        elif isinstance(extensions, dict) and extensions.get(key) is not None:
            metadata[key] = extensions[key]
    metadata.update(extra)
    return metadata


def _previous(cause: Message) -> dict[str, Any]:
    """The metadata of ``cause`` to carry keys over from; ``{}`` when absent or not an object."""
    previous = cause.metadata
    if previous is not None:
        return previous
    raw = cause.metadata_json
    if raw is not None and raw != "null":
        log.warning(
            "metadata is not a JSON object; following the message as if it had none",
            stream_name=cause.stream_name,
            position=cause.position,
            global_position=cause.global_position,
            metadata=raw[:200],
        )
    return {}


def correlated(stream_name: str, **extra: Any) -> dict[str, Any]:
    """Metadata that starts a correlation at ``stream_name``."""
    return {CORRELATION_STREAM_NAME: stream_name, **extra}


def correlation_of(message: Message) -> str | None:
    """The correlation a message carries: ``correlationStreamName`` (at the top level of its
    metadata, or in Protean's ``extensions``), else Protean's ``domain.correlation_id``."""
    raw = message.metadata_json
    if raw is None or "orrelation" not in raw:  # most messages: no decoding
        return None
    metadata = message.metadata or {}
    for holder in (metadata, metadata.get("extensions"), metadata.get("domain")):
        if isinstance(holder, dict):
            value = holder.get(CORRELATION_STREAM_NAME) or holder.get("correlation_id")
            if isinstance(value, str):
                return value
    return None
