"""Deadlines of process managers: messages due to an instance at a time.

A step schedules a deadline (``ctx.schedule``) in its batch's transaction; a later step may
cancel it (``ctx.cancel``). The consumer that scheduled it delivers it once due
(``worker.engine.deliveries``). ``Deadlines`` is the storage seam: ``PostgresDeadlines`` keeps
them in ``worker.deadlines``; the testing kit's stand-in keeps them in memory with a clock a
test moves. ``now`` is the clock every due time is measured on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import orjson

from worker.engine import process_queries as q

if TYPE_CHECKING:
    from collections.abc import Callable

    import asyncpg

    from worker.store.types import Connection


@dataclass(frozen=True)
class Deadline:
    """One scheduled message: ``instance`` is the instance's stream name, ``name`` what a
    later step cancels it by, ``consumer`` the consumer that delivers it."""

    id: str
    process: str
    consumer: str
    instance: str
    name: str
    due_at: datetime
    type: str
    data: str  # JSON text
    metadata: str | None = None  # JSON text
    attempts: int = 0


@dataclass(frozen=True)
class DeadlineCounts:
    """A process manager's deadlines by state."""

    process: str
    pending: int
    due: int
    fired: int
    cancelled: int
    failed: int


class Deadlines(Protocol):
    """Where deadlines are kept (see the module doc)."""

    def now(self) -> datetime:
        """The time due times are measured on (timezone-aware)."""
        ...

    async def schedule(self, conn: Connection, deadline: Deadline) -> None:
        """Keep ``deadline`` (in ``conn``'s transaction); one with its id already kept stays."""
        ...

    async def cancel(self, conn: Connection, instance: str, name: str | None) -> None:
        """Cancel ``instance``'s pending deadlines named ``name`` (``None``: all)."""
        ...

    async def due(self, consumer: str, limit: int) -> list[Deadline]:
        """``consumer``'s pending deadlines due now, earliest first, at most ``limit``."""
        ...

    async def next_due(self, consumer: str) -> datetime | None:
        """When ``consumer``'s next pending deadline is due; ``None``: none is pending."""
        ...

    async def fire(self, conn: Connection, deadline_id: str) -> bool:
        """Mark a deadline fired in ``conn``'s transaction; False when it is no longer
        pending (cancelled, or fired by an earlier delivery)."""
        ...

    async def failed(
        self, deadline_id: str, error: str, *, final: bool, retry_at: datetime
    ) -> None:
        """Record a failed delivery: due again at ``retry_at``, or (``final``) never."""
        ...

    async def counts(self) -> list[DeadlineCounts]:
        """Every process manager's deadlines by state."""
        ...


def wall_clock() -> datetime:
    """The time now, in UTC."""
    return datetime.now(UTC)


class PostgresDeadlines:
    """Deadlines in ``worker.deadlines``, due by ``clock`` (default: this process's, UTC)."""

    def __init__(
        self, pool: asyncpg.Pool[asyncpg.Record], clock: Callable[[], datetime] = wall_clock
    ) -> None:
        self._pool, self._clock = pool, clock

    def now(self) -> datetime:
        return self._clock()

    async def schedule(self, conn: Connection, deadline: Deadline) -> None:
        d = deadline
        await conn.execute(
            q.SCHEDULE_DEADLINE,
            d.id,
            d.process,
            d.consumer,
            d.instance,
            d.name,
            d.due_at,
            d.type,
            d.data,
            d.metadata,
        )

    async def cancel(self, conn: Connection, instance: str, name: str | None) -> None:
        await conn.execute(q.CANCEL_DEADLINES, instance, name)

    async def due(self, consumer: str, limit: int) -> list[Deadline]:
        rows = await self._pool.fetch(q.DUE_DEADLINES, consumer, self.now(), limit)
        return [Deadline(*row) for row in rows]

    async def next_due(self, consumer: str) -> datetime | None:
        due: datetime | None = await self._pool.fetchval(q.NEXT_DEADLINE, consumer)
        return due

    async def fire(self, conn: Connection, deadline_id: str) -> bool:
        return await conn.fetchval(q.FIRE_DEADLINE, deadline_id) is not None

    async def failed(
        self, deadline_id: str, error: str, *, final: bool, retry_at: datetime
    ) -> None:
        await self._pool.execute(q.DEADLINE_FAILED, deadline_id, error, final, retry_at)

    async def counts(self) -> list[DeadlineCounts]:
        rows = await self._pool.fetch(q.DEADLINE_COUNTS, self.now())
        return [DeadlineCounts(*row) for row in rows]


def message_json(value: object) -> str:
    """A deadline's data or metadata as JSON text."""
    return orjson.dumps(value).decode()
