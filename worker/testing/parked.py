"""``MemoryParkedMessages``: the parked messages of consumers in memory, for tests.

It implements ``worker.engine.dead_letters.ParkedMessages`` with ``worker.dead_letters``'s
rules (the contract suite ``tests/contracts/test_parked_messages.py`` holds both to them):
parking is sequenced per (consumer, stream): a message parked while its stream already has
parked messages records the first one's id as ``blocked_by``; a message parked twice is kept
once; ids count up from 1. Parking in an in-memory transaction is undone by its rollback.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from worker.engine.dead_letters import Failure, ParkedMessage
from worker.testing.connection import joined, undo_on

if TYPE_CHECKING:
    from worker.store.message import Message
    from worker.store.types import Connection


@dataclass(frozen=True)
class MemoryParked:
    """A parked message as kept in memory: its listing, the message and why it was parked
    (``failure`` is None for a message parked behind an earlier one of its stream)."""

    listing: ParkedMessage
    message: Message
    failure: Failure | None = field(default=None, compare=False)

    @property
    def consumer(self) -> str:
        return self.listing.consumer

    @property
    def stream_name(self) -> str:
        return self.listing.stream_name

    @property
    def position(self) -> int:
        return self.listing.position

    @property
    def global_position(self) -> int:
        return self.listing.global_position

    @property
    def type(self) -> str:
        return self.listing.type

    @property
    def blocked_by(self) -> int | None:
        """The id of the stream's first parked message, when this one is parked behind it."""
        return self.listing.blocked_by

    @property
    def error(self) -> BaseException | None:
        """The error that parked it (``None``: parked behind an earlier message)."""
        return None if self.failure is None else self.failure.error


class MemoryParkedMessages:
    """Parked messages per consumer, with queries a test can assert on: ``has(stream_name)``,
    ``parked(consumer)``, ``failures(consumer)``."""

    def __init__(self) -> None:
        self._parked: dict[tuple[str, int], MemoryParked] = {}  # (consumer, global position)
        self._ids = itertools.count(1)

    async def park(
        self, conn: Connection, consumer: str, message: Message, failure: Failure | None
    ) -> None:
        """Park ``message`` in the caller's transaction (see the module doc)."""
        joined(conn)
        key = (consumer, message.global_position)
        if key in self._parked:
            return
        first = self._first_of(consumer, message.stream_name)
        error_type, error, _ = failure.summary() if failure else (None, None, None)
        listing = ParkedMessage(
            id=next(self._ids),
            consumer=consumer,
            stream_name=message.stream_name,
            position=message.position,
            global_position=message.global_position,
            type=message.type,
            error_type=error_type,
            error=error,
            attempts=failure.attempts if failure else 0,
            blocked_by=None if first is None else first.listing.id,
            replay_requested=False,
            parked_at=datetime.now(UTC),
        )
        self._parked[key] = MemoryParked(listing, message, failure)
        undo_on(conn, lambda: self._parked.pop(key))

    def _first_of(self, consumer: str, stream_name: str) -> MemoryParked | None:
        return min(
            (p for p in self._of(consumer, stream_name)),
            key=lambda p: p.listing.id,
            default=None,
        )

    def _of(self, consumer: str | None, stream_name: str | None = None) -> list[MemoryParked]:
        found = [
            p
            for p in self._parked.values()
            if (consumer is None or p.listing.consumer == consumer)
            and (stream_name is None or p.listing.stream_name == stream_name)
        ]
        found.sort(key=lambda p: (p.listing.consumer, p.listing.global_position))
        return found

    async def parked_streams(self, consumer: str) -> dict[str, bool]:
        """Streams with parked messages -> whether a replay was requested for them."""
        streams: dict[str, bool] = {}
        for p in self._of(consumer):
            name = p.listing.stream_name
            streams[name] = streams.get(name, False) or p.listing.replay_requested
        return streams

    async def parked_of_stream(self, consumer: str, stream_name: str) -> list[tuple[int, int]]:
        """(id, global position) of a stream's parked messages, in order."""
        return [(p.listing.id, p.listing.global_position) for p in self._of(consumer, stream_name)]

    async def parked(
        self, consumer: str | None = None, stream_name: str | None = None
    ) -> list[ParkedMessage]:
        """Parked messages, in global order per consumer."""
        return [p.listing for p in self._of(consumer, stream_name)]

    async def request_replay(self, consumer: str, stream_name: str) -> int:
        """Mark a stream's parked messages for replay; how many were marked."""
        marked = self._of(consumer, stream_name)
        for p in marked:
            key = (consumer, p.listing.global_position)
            self._parked[key] = replace(p, listing=replace(p.listing, replay_requested=True))
        return len(marked)

    async def discard(self, consumer: str, stream_name: str) -> int:
        """Drop a stream's parked messages; how many were dropped."""
        dropped = self._of(consumer, stream_name)
        for p in dropped:
            del self._parked[(consumer, p.listing.global_position)]
        self._unblock({p.listing.id for p in dropped})
        return len(dropped)

    async def replayed(self, conn: Connection, dead_letter_id: int) -> None:
        """Remove a parked message that was handled again, in the caller's transaction."""
        self._undoable(conn)
        for key, p in list(self._parked.items()):
            if p.listing.id == dead_letter_id:
                del self._parked[key]
                self._unblock({dead_letter_id})

    async def failed_again(
        self, conn: Connection, dead_letter_id: int, error: BaseException, attempts: int
    ) -> None:
        """Record a failed replay on the parked message (it stays parked) and withdraw its
        stream's replay request, in the caller's transaction."""
        self._undoable(conn)
        error_type, text, _ = Failure(error, attempts, datetime.now(UTC)).summary()
        for key, p in list(self._parked.items()):
            if p.listing.id == dead_letter_id:
                listing = replace(
                    p.listing,
                    error_type=error_type,
                    error=text,
                    attempts=p.listing.attempts + attempts,
                )
                self._parked[key] = replace(p, listing=listing)
                self._withdraw(p.listing.consumer, p.listing.stream_name)

    def _undoable(self, conn: Connection) -> None:
        """What changes next in ``conn``'s transaction is undone by its rollback."""
        joined(conn)
        before = dict(self._parked)

        def undo() -> None:
            self._parked.clear()
            self._parked.update(before)

        undo_on(conn, undo)

    def _withdraw(self, consumer: str, stream_name: str) -> None:
        for p in self._of(consumer, stream_name):
            key = (consumer, p.listing.global_position)
            self._parked[key] = replace(p, listing=replace(p.listing, replay_requested=False))

    def _unblock(self, ids: set[int]) -> None:
        """``blocked_by`` of the messages behind dropped ones becomes None (ON DELETE SET
        NULL)."""
        for key, p in self._parked.items():
            if p.listing.blocked_by in ids:
                self._parked[key] = replace(p, listing=replace(p.listing, blocked_by=None))

    # -- what a test asserts -----------------------------------------------------------------

    def has(self, stream_name: str, consumer: str | None = None) -> bool:
        """True when a message of ``stream_name`` is parked (for ``consumer``, when given)."""
        return bool(self._of(consumer, stream_name))

    def entries(
        self, consumer: str | None = None, stream_name: str | None = None
    ) -> list[MemoryParked]:
        """Parked messages with the messages themselves and their failures, in global order
        per consumer."""
        return self._of(consumer, stream_name)

    def failures(self, consumer: str | None = None) -> list[BaseException]:
        """The errors that parked messages (not those parked behind them), in order."""
        return [p.failure.error for p in self._of(consumer) if p.failure is not None]
