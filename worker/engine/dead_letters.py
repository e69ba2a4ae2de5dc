"""Parked messages (the ``worker.dead_letters`` table): parking, listing, replay requests,
discarding.

Parking is sequenced per stream: the first failed message carries the error, and the stream's
later messages are parked behind it until it is replayed or discarded.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from worker.engine import queries as q

if TYPE_CHECKING:
    from worker.store.message import Message
    from worker.store.types import Connection, Executor


@dataclass(frozen=True)
class Failure:
    """Why a message was parked."""

    error: BaseException
    attempts: int
    first_failed_at: datetime

    def summary(self) -> tuple[str, str, str]:
        """(error type, message, traceback summary) as stored."""
        err = self.error
        tb = "".join(traceback.format_exception(type(err), err, err.__traceback__, limit=8))
        return type(err).__qualname__, str(err)[:2000], tb[-8000:]


def describe(error_type: str | None, error: str | None) -> str:
    """A stored error as one line: ``Type: message``."""
    text = " ".join((error or "").split())
    return f"{error_type}: {text}" if error_type else text or "unknown error"


@dataclass(frozen=True)
class ReplayState:
    """Where a stream's parked messages stand: the first one, and whether a replay is due."""

    position: int
    error: str
    requested: bool


@dataclass(frozen=True)
class ParkedMessage:
    """One parked message, as listed; ``blocked_by`` is the id of the stream's first parked
    message when this one was parked behind it."""

    id: int
    consumer: str
    stream_name: str
    position: int
    global_position: int
    type: str
    error_type: str | None
    error: str | None
    attempts: int
    blocked_by: int | None
    replay_requested: bool
    parked_at: datetime | None = field(default=None, compare=False)


class ParkedMessages(Protocol):
    """Where a consumer's parked messages are kept (the engine's view of them)."""

    async def park(
        self, conn: Connection, consumer: str, message: Message, failure: Failure | None
    ) -> None:
        """Park ``message`` in the caller's transaction; ``failure`` is None when it is parked
        behind an earlier message of its stream. Parking a message twice keeps the first."""
        ...

    async def parked_streams(self, consumer: str) -> dict[str, bool]:
        """Streams with parked messages -> whether a replay was requested for them."""
        ...

    async def parked_of_stream(self, consumer: str, stream_name: str) -> list[tuple[int, int]]:
        """(id, global position) of a stream's parked messages, in order."""
        ...

    async def parked(
        self, consumer: str | None = None, stream_name: str | None = None
    ) -> list[ParkedMessage]:
        """Parked messages, in global order per consumer."""
        ...

    async def request_replay(self, consumer: str, stream_name: str) -> int:
        """Mark a stream's parked messages for replay; how many were marked."""
        ...

    async def discard(self, consumer: str, stream_name: str) -> int:
        """Drop a stream's parked messages; how many were dropped."""
        ...

    async def replayed(self, conn: Connection, dead_letter_id: int) -> None:
        """Remove a parked message that was handled again, in the caller's transaction."""
        ...

    async def failed_again(
        self, conn: Connection, dead_letter_id: int, error: BaseException, attempts: int
    ) -> None:
        """Record a failed replay on the parked message (it stays parked) and withdraw its
        stream's replay request, in the caller's transaction."""
        ...


class PostgresParkedMessages:
    """Parked messages in ``worker.dead_letters``: the engine's ``ParkedMessages``, and what
    operators ask of them (listing, showing, replay states, discarding one, counts)."""

    __slots__ = ("_executor",)

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def park(
        self, conn: Connection, consumer: str, message: Message, failure: Failure | None
    ) -> None:
        error_type, error, tb = failure.summary() if failure else (None, None, None)
        await conn.execute(
            q.PARK,
            consumer,
            message.id,
            message.stream_name,
            message.position,
            message.global_position,
            message.type,
            error_type,
            error,
            tb,
            failure.attempts if failure else 0,
            failure.first_failed_at if failure else None,
        )

    async def parked_streams(self, consumer: str) -> dict[str, bool]:
        rows = await self._executor.fetch(q.PARKED_STREAMS, consumer)
        return {row["stream_name"]: row["replay"] for row in rows}

    async def parked_of_stream(self, consumer: str, stream_name: str) -> list[tuple[int, int]]:
        rows = await self._executor.fetch(q.PARKED_OF_STREAM, consumer, stream_name)
        return [(row["id"], row["global_position"]) for row in rows]

    async def parked(
        self, consumer: str | None = None, stream_name: str | None = None
    ) -> list[ParkedMessage]:
        rows = await self.listing(consumer, stream_name, limit=1_000_000)
        names = ParkedMessage.__dataclass_fields__
        return [ParkedMessage(**{k: v for k, v in row.items() if k in names}) for row in rows]

    async def request_replay(self, consumer: str, stream_name: str) -> int:
        return len(await self._executor.fetch(q.REQUEST_REPLAY, consumer, stream_name))

    async def discard(self, consumer: str, stream_name: str) -> int:
        return len(await self._executor.fetch(q.DISCARD_PARKED, None, consumer, stream_name))

    async def replayed(self, conn: Connection, dead_letter_id: int) -> None:
        await conn.execute(q.DELETE_DEAD_LETTER, dead_letter_id)

    async def failed_again(
        self, conn: Connection, dead_letter_id: int, error: BaseException, attempts: int
    ) -> None:
        error_type, text, tb = Failure(error, attempts, datetime.now()).summary()
        await conn.execute(q.FAILED_AGAIN, dead_letter_id, error_type, text, tb, attempts)

    async def listing(
        self, consumer: str | None = None, stream_name: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Parked messages with everything listed about them, oldest first per consumer."""
        rows = await self._executor.fetch(q.LIST_PARKED, consumer, stream_name, limit)
        return [dict(row) for row in rows]

    async def show(self, dead_letter_id: int) -> dict[str, Any] | None:
        """Everything stored about one parked message."""
        row = await self._executor.fetchrow(q.SHOW_PARKED, dead_letter_id)
        return None if row is None else dict(row)

    async def discard_one(self, dead_letter_id: int) -> int:
        """Delete one parked message; how many were deleted (0 or 1)."""
        return len(await self._executor.fetch(q.DISCARD_PARKED, dead_letter_id, None, None))

    async def replay_state(self, consumer: str, stream_name: str) -> ReplayState | None:
        """The stream's first parked message and whether a replay is requested; ``None`` when
        nothing of the stream is parked."""
        row = await self._executor.fetchrow(q.REPLAY_STATE, consumer, stream_name)
        if row is None:
            return None
        error = describe(row["error_type"], row["error"])
        return ReplayState(row["position"], error, row["requested"])

    async def counts(self) -> dict[str, int]:
        """Parked messages per consumer."""
        return {row[0]: row[1] for row in await self._executor.fetch(q.PARKED_COUNTS)}
