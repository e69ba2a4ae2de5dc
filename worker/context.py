"""What a handler gets besides the event: the message, the batch's connection, and ``write``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import structlog

from worker.event import BaseEvent
from worker.message import NewMessage
from worker.metadata import follow

if TYPE_CHECKING:
    from worker._types import Connection
    from worker.message import Message
    from worker.message_store import MessageStore

_IDS = uuid.UUID("6f1f7e0e-3c55-4a57-9a43-3d1f4f2a9b10")


class Context:
    """Per-batch context; ``message`` is the message being handled.

    ``conn`` is inside the batch's transaction: read-model writes made on it commit together
    with the consumer's new position, exactly once. ``write`` emits messages in that same
    transaction, with causation/correlation metadata following the handled message and an id
    derived from (consumer, handled message, n), so a redelivery can never write it twice.
    """

    __slots__ = ("_emitted", "_store", "conn", "consumer", "message")

    def __init__(self, consumer: str, conn: Connection, store: MessageStore) -> None:
        self.consumer = consumer
        self.conn = conn
        self._store = store
        self.message: Message
        self._emitted = 0

    def _begin(self, message: Message) -> None:
        self.message = message
        self._emitted = 0

    @property
    def idempotency_key(self) -> str:
        """A stable key for outside side effects: the handled message's id."""
        return self.message.id

    @property
    def log(self) -> Any:
        """A logger bound to this consumer and message."""
        m = self.message
        return structlog.get_logger("worker.handler").bind(
            consumer=self.consumer,
            stream_name=m.stream_name,
            position=m.position,
            global_position=m.global_position,
            type=m.type,
        )

    async def write(
        self,
        stream_name: str,
        event: BaseEvent | NewMessage,
        *,
        expected_version: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        """Write a message caused by the one being handled, in the batch's transaction."""
        meta = follow(self.message, **(metadata or {}))
        self._emitted += 1
        ident = str(uuid.uuid5(_IDS, f"{self.consumer}/{self.message.id}/{self._emitted}"))
        if isinstance(event, BaseEvent):
            new = NewMessage(event.type_name(), event.model_dump(mode="json"), meta, ident)
        else:
            new = NewMessage(event.type, event.data, {**meta, **(event.metadata or {})}, ident)
        return await self._store.write(
            stream_name, new, expected_version=expected_version, conn=self.conn
        )
