"""``MemoryDeadlines``: process managers' deadlines in memory, due by a clock the test moves.

It implements ``worker.engine.deadlines.Deadlines`` with ``PostgresDeadlines``' rules (the
contract suite ``tests/contracts/test_deadlines.py`` holds both to them): a deadline kept twice
(same id) stays as first kept; cancelling, firing and failing apply to pending ones only;
changes made in an in-memory transaction are undone by its rollback. ``FakeClock`` is the time:
``advance(seconds)`` moves it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from worker.engine.deadlines import Deadline, DeadlineCounts
from worker.testing.connection import undo_on

if TYPE_CHECKING:
    from worker.store.types import Connection


class FakeClock:
    """A clock that stands still until ``advance`` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.time = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.time

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move the clock on; the time now."""
        self.time += seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        return self.time


@dataclass
class MemoryDeadline:
    """A kept deadline and what became of it."""

    deadline: Deadline
    state: str = "pending"  # pending, fired, cancelled, failed
    error: str | None = None


class MemoryDeadlines:
    """Deadlines in memory (see the module doc); ``pending()``, ``fired()`` and
    ``cancelled()`` let a test assert on them."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self._rows: dict[str, MemoryDeadline] = {}

    def now(self) -> datetime:
        return self.clock()

    async def schedule(self, conn: Connection, deadline: Deadline) -> None:
        if deadline.id in self._rows:
            return
        self._rows[deadline.id] = MemoryDeadline(deadline)
        undo_on(conn, lambda: self._rows.pop(deadline.id, None))

    async def cancel(self, conn: Connection, instance: str, name: str | None) -> None:
        for row in self._rows.values():
            d = row.deadline
            if row.state == "pending" and d.instance == instance and name in (None, d.name):
                self._set(conn, row, "cancelled")

    async def due(self, consumer: str, limit: int) -> list[Deadline]:
        now = self.now()
        due = [r.deadline for r in self._pending(consumer) if r.deadline.due_at <= now]
        return sorted(due, key=lambda d: (d.due_at, d.id))[:limit]

    async def next_due(self, consumer: str) -> datetime | None:
        return min((r.deadline.due_at for r in self._pending(consumer)), default=None)

    async def fire(self, conn: Connection, deadline_id: str) -> bool:
        row = self._rows.get(deadline_id)
        if row is None or row.state != "pending":
            return False
        self._set(conn, row, "fired")
        return True

    async def failed(
        self, deadline_id: str, error: str, *, final: bool, retry_at: datetime
    ) -> None:
        row = self._rows[deadline_id]
        attempts = row.deadline.attempts + 1
        row.deadline = replace(row.deadline, attempts=attempts, due_at=retry_at)
        row.error = error
        if final:
            row.state = "failed"

    async def counts(self) -> list[DeadlineCounts]:
        now = self.now()
        counts: dict[str, list[int]] = {}
        for row in self._rows.values():
            c = counts.setdefault(row.deadline.process, [0, 0, 0, 0, 0])
            pending = row.state == "pending"
            c[0] += pending
            c[1] += pending and row.deadline.due_at <= now
            c[2] += row.state == "fired"
            c[3] += row.state == "cancelled"
            c[4] += row.state == "failed"
        return [DeadlineCounts(p, *c) for p, c in sorted(counts.items())]

    # -- what a test asserts on --------------------------------------------------------------

    def pending(self, instance: str | None = None) -> list[Deadline]:
        """Pending deadlines (of one instance's stream), earliest first."""
        return self._of("pending", instance)

    def fired(self, instance: str | None = None) -> list[Deadline]:
        """Deadlines delivered."""
        return self._of("fired", instance)

    def cancelled(self, instance: str | None = None) -> list[Deadline]:
        """Deadlines cancelled by a later step (or the instance's end)."""
        return self._of("cancelled", instance)

    def _of(self, state: str, instance: str | None) -> list[Deadline]:
        rows = [r.deadline for r in self._rows.values() if r.state == state]
        return sorted(
            (d for d in rows if instance in (None, d.instance)), key=lambda d: (d.due_at, d.id)
        )

    def _pending(self, consumer: str) -> list[MemoryDeadline]:
        return [
            r
            for r in self._rows.values()
            if r.state == "pending" and r.deadline.consumer == consumer
        ]

    def _set(self, conn: Connection, row: MemoryDeadline, state: str) -> None:
        before = row.state
        row.state = state
        undo_on(conn, lambda: setattr(row, "state", before))
