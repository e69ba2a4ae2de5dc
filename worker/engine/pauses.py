"""Consumers an operator paused (``worker pause``), in ``worker.paused``: stored in the database,
so a pause outlives restarts and holds for every process.

A paused consumer's holder keeps its lease (renewing it) and handles nothing; a standby stays a
standby; ``worker run --until-caught-up`` leaves it where it is. Pausing or resuming tells a
running worker on the control channel, so it reacts at once (within a second without
notifications). Rebuilds are not paused: they replay what the operator asked for.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from worker.engine import queries as q

if TYPE_CHECKING:
    from collections.abc import Sequence

    from worker.store.types import Executor


async def pause(
    conn: Executor, consumers: Sequence[str], by: str, reason: str | None = None
) -> list[str]:
    """Pause ``consumers``; the ones that were not paused yet."""
    rows = await conn.fetch(q.PAUSE, list(consumers), by, reason)
    await _tell(conn, consumers)
    return sorted(row[0] for row in rows)


async def resume(conn: Executor, consumers: Sequence[str]) -> list[str]:
    """Resume ``consumers``; the ones that were paused."""
    rows = await conn.fetch(q.RESUME, list(consumers))
    await _tell(conn, consumers)
    return sorted(row[0] for row in rows)


async def _tell(conn: Executor, consumers: Sequence[str]) -> None:
    for name in consumers:
        await conn.execute(q.NOTIFY_CONTROL, name)


async def is_paused(conn: Executor, consumer: str) -> bool:
    return bool(await conn.fetchval(q.IS_PAUSED, consumer))


async def paused(conn: Executor) -> dict[str, dict[str, Any]]:
    """Every paused consumer -> when, by whom and why."""
    return {row["consumer"]: dict(row) for row in await conn.fetch(q.PAUSED)}


class Switch:
    """Whether one consumer is paused, looked up at most once per ``interval`` (or at once)."""

    def __init__(self, pool: Executor, consumer: str, interval: float) -> None:
        self._pool = pool
        self._consumer = consumer
        self._interval = interval
        self._checked_at = -interval
        self._paused = False

    async def changed(self, *, force: bool = False) -> bool | None:
        """The new pause state when it changed since the last look; ``None`` otherwise (or
        when it is too soon to look again)."""
        now = time.monotonic()
        if not force and now - self._checked_at < self._interval:
            return None
        self._checked_at = now
        paused = await is_paused(self._pool, self._consumer)
        if paused == self._paused:
            return None
        self._paused = paused
        return paused
