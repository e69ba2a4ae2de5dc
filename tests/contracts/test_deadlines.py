"""The deadline store's contract: MemoryDeadlines and PostgresDeadlines (the
``worker.deadlines`` table) behave alike (each test runs against both, on one fake clock)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.engine.deadlines import Deadline, DeadlineCounts, PostgresDeadlines
from worker.store.transactions import PoolTransactions
from worker.testing import FakeClock, MemoryDeadlines, MemoryTransactions

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Backend:
    deadlines: Any  # PostgresDeadlines or MemoryDeadlines
    transactions: Any
    clock: FakeClock

    async def schedule(self, *deadlines: Deadline) -> None:
        async with self.transactions.transaction() as conn:
            for deadline in deadlines:
                await self.deadlines.schedule(conn, deadline)


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    clock = FakeClock(START)
    if request.param == "memory":
        return Backend(MemoryDeadlines(clock), MemoryTransactions(), clock)
    pool = request.getfixturevalue("pool")
    return Backend(PostgresDeadlines(pool, clock), PoolTransactions(pool), clock)


def deadline(n: int, after: float, *, instance: str = "flow-1", name: str = "Timeout") -> Deadline:
    return Deadline(
        f"00000000-0000-0000-0000-{n:012d}",
        "flow",
        "flow:order",
        instance,
        name,
        START + timedelta(seconds=after),
        "Timeout",
        '{"order_id": "1"}',
        '{"causationMessageStreamName": "order-1"}',
    )


async def test_a_deadline_is_due_once_its_time_has_come(backend: Backend) -> None:
    """Not due before its time; due, with its message, at it; the next due time is its."""
    d = deadline(1, 30)
    await backend.schedule(d)
    assert await backend.deadlines.due("flow:order", 10) == []
    assert await backend.deadlines.next_due("flow:order") == d.due_at
    backend.clock.advance(30)
    (due,) = await backend.deadlines.due("flow:order", 10)
    assert (due.id, due.instance, due.type, due.due_at) == (d.id, d.instance, d.type, d.due_at)
    assert json.loads(due.data) == {"order_id": "1"}
    assert json.loads(due.metadata) == {"causationMessageStreamName": "order-1"}
    assert await backend.deadlines.due("other", 10) == []


async def test_due_deadlines_come_earliest_first_up_to_the_limit(backend: Backend) -> None:
    """Three due: the two earliest."""
    await backend.schedule(deadline(1, 3), deadline(2, 1), deadline(3, 2))
    backend.clock.advance(5)
    due = await backend.deadlines.due("flow:order", 2)
    assert [d.id[-1] for d in due] == ["2", "3"]


async def test_a_deadline_is_fired_once(backend: Backend) -> None:
    """The first fire takes it; a second finds it gone; it is due no more."""
    await backend.schedule(deadline(1, 0))
    async with backend.transactions.transaction() as conn:
        assert await backend.deadlines.fire(conn, deadline(1, 0).id)
    async with backend.transactions.transaction() as conn:
        assert not await backend.deadlines.fire(conn, deadline(1, 0).id)
    assert await backend.deadlines.due("flow:order", 10) == []
    assert await backend.deadlines.next_due("flow:order") is None


async def test_a_rolled_back_fire_leaves_the_deadline_due(backend: Backend) -> None:
    """A delivery whose transaction fails delivers nothing."""
    await backend.schedule(deadline(1, 0))
    with pytest.raises(RuntimeError):
        async with backend.transactions.transaction() as conn:
            await backend.deadlines.fire(conn, deadline(1, 0).id)
            raise RuntimeError("handler failed")
    assert len(await backend.deadlines.due("flow:order", 10)) == 1


async def test_cancel_takes_the_instances_deadlines_of_that_name(backend: Backend) -> None:
    """Cancelling by name leaves other names and other instances; None cancels all."""
    await backend.schedule(
        deadline(1, 1),
        deadline(2, 1, name="Reminder"),
        deadline(3, 1, instance="flow-2"),
    )
    async with backend.transactions.transaction() as conn:
        await backend.deadlines.cancel(conn, "flow-1", "Timeout")
    backend.clock.advance(1)
    assert sorted(d.id[-1] for d in await backend.deadlines.due("flow:order", 10)) == ["2", "3"]
    async with backend.transactions.transaction() as conn:
        await backend.deadlines.cancel(conn, "flow-1", None)
        assert not await backend.deadlines.fire(conn, deadline(2, 1).id)
    assert [d.id[-1] for d in await backend.deadlines.due("flow:order", 10)] == ["3"]


async def test_a_deadline_kept_twice_stays_as_first_kept(backend: Backend) -> None:
    """The same id again (a step handled again) changes nothing."""
    await backend.schedule(deadline(1, 10))
    await backend.schedule(deadline(1, 99))
    assert await backend.deadlines.next_due("flow:order") == START + timedelta(seconds=10)


async def test_a_failed_delivery_is_due_again_later_or_never(backend: Backend) -> None:
    """A failure moves its due time; a final one takes it out of the due ones."""
    await backend.schedule(deadline(1, 0))
    later = START + timedelta(seconds=5)
    await backend.deadlines.failed(deadline(1, 0).id, "boom", final=False, retry_at=later)
    assert await backend.deadlines.due("flow:order", 10) == []
    backend.clock.advance(5)
    (due,) = await backend.deadlines.due("flow:order", 10)
    assert due.attempts == 1
    await backend.deadlines.failed(due.id, "boom", final=True, retry_at=later)
    assert await backend.deadlines.due("flow:order", 10) == []
    assert await backend.deadlines.next_due("flow:order") is None


async def test_counts_say_what_became_of_each(backend: Backend) -> None:
    """Pending, due, fired, cancelled and failed, per process manager."""
    await backend.schedule(
        deadline(1, 0), deadline(2, 0, instance="flow-2"), deadline(3, 50, instance="flow-3")
    )
    await backend.schedule(deadline(4, 0, instance="flow-4"), deadline(5, 0, instance="flow-5"))
    async with backend.transactions.transaction() as conn:
        await backend.deadlines.fire(conn, deadline(1, 0).id)
        await backend.deadlines.cancel(conn, "flow-2", None)
    await backend.deadlines.failed(deadline(4, 0).id, "x", final=True, retry_at=START)
    assert await backend.deadlines.counts() == [DeadlineCounts("flow", 2, 1, 1, 1, 1)]
