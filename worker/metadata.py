"""Message metadata with MessageDB/Eventide's own keys, so other clients can read it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.message import Message

CORRELATION_STREAM_NAME = "correlationStreamName"
CAUSATION_STREAM_NAME = "causationMessageStreamName"
CAUSATION_POSITION = "causationMessagePosition"
CAUSATION_GLOBAL_POSITION = "causationMessageGlobalPosition"
REPLY_STREAM_NAME = "replyStreamName"
SCHEMA_VERSION = "schemaVersion"


def follow(cause: Message, **extra: Any) -> dict[str, Any]:
    """Metadata for a message caused by ``cause``, as Eventide's ``follow`` writes it.

    Causation points at ``cause``; correlation and reply stream are carried over from it.
    """
    metadata: dict[str, Any] = {
        CAUSATION_STREAM_NAME: cause.stream_name,
        CAUSATION_POSITION: cause.position,
        CAUSATION_GLOBAL_POSITION: cause.global_position,
    }
    previous = cause.metadata or {}
    for key in (CORRELATION_STREAM_NAME, REPLY_STREAM_NAME):
        if previous.get(key) is not None:
            metadata[key] = previous[key]
    metadata.update(extra)
    return metadata


def correlated(stream_name: str, **extra: Any) -> dict[str, Any]:
    """Metadata that starts a correlation at ``stream_name``."""
    return {CORRELATION_STREAM_NAME: stream_name, **extra}
