"""The position store's contract: MemoryPositionStore and PostgresPositionStore behave alike
(each test runs against both)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from worker.engine import queries as q
from worker.engine.positions import PostgresPositionStore
from worker.errors import LeaseLostError, PositionMovedError
from worker.store.transactions import PoolTransactions
from worker.testing import MemoryPositionStore, MemoryTransactions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from worker.store.transactions import Transactions

pytestmark = pytest.mark.anyio


@dataclass
class Backend:
    positions: Any  # PostgresPositionStore or MemoryPositionStore
    transactions: Transactions
    take_lease: Callable[[str], Awaitable[int]]  # a new epoch for the consumer's lease

    async def commit(self, consumer: str, position: int, epoch: int, expected: int) -> None:
        async with self.transactions.transaction() as conn:
            await self.positions.commit(conn, consumer, position, epoch, expected)


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        positions = MemoryPositionStore()

        async def take(consumer: str) -> int:
            return positions.take_lease(consumer)

        return Backend(positions, MemoryTransactions(), take)
    pool = request.getfixturevalue("pool")

    async def take_pg(consumer: str) -> int:
        await pool.execute(q.FENCE_LEASE, consumer)  # a new epoch, as a takeover gives
        epoch: int = await pool.fetchval(q.LEASE_EPOCH, consumer)
        return epoch

    return Backend(PostgresPositionStore(pool), PoolTransactions(pool), take_pg)


async def test_a_consumer_that_never_committed_is_at_zero(backend: Backend) -> None:
    assert await backend.positions.load("c") == 0
    assert await backend.positions.high_water("c") == 0


async def test_commits_move_the_position_and_the_high_water_mark(backend: Backend) -> None:
    """Each commit starts where the last one ended."""
    epoch = await backend.take_lease("c")
    await backend.commit("c", 5, epoch, expected=0)
    await backend.commit("c", 9, epoch, expected=5)
    assert await backend.positions.load("c") == 9
    assert await backend.positions.high_water("c") == 9
    assert await backend.positions.load("other") == 0


async def test_a_commit_needs_the_current_lease_epoch(backend: Backend) -> None:
    """Without a lease, or with an epoch a takeover replaced, a commit raises LeaseLostError
    and changes nothing (a zombie can never commit)."""
    with pytest.raises(LeaseLostError):
        await backend.commit("c", 5, 1, expected=0)
    old = await backend.take_lease("c")
    await backend.commit("c", 5, old, expected=0)
    new = await backend.take_lease("c")
    assert new == old + 1
    with pytest.raises(LeaseLostError) as raised:
        await backend.commit("c", 8, old, expected=5)
    assert not isinstance(raised.value, PositionMovedError)
    assert await backend.positions.load("c") == 5
    await backend.commit("c", 8, new, expected=5)
    assert await backend.positions.load("c") == 8


async def test_a_commit_must_start_from_the_committed_position(backend: Backend) -> None:
    """A batch that did not start at the committed position (applied twice, or moved by a
    reset) raises PositionMovedError and changes nothing."""
    epoch = await backend.take_lease("c")
    await backend.commit("c", 5, epoch, expected=0)
    with pytest.raises(PositionMovedError):
        await backend.commit("c", 9, epoch, expected=0)
    assert await backend.positions.load("c") == 5


async def test_a_consumer_s_first_commit_is_taken_from_any_start(backend: Backend) -> None:
    """There is nothing to compare the first commit with: it is recorded whatever it expected."""
    epoch = await backend.take_lease("c")
    await backend.commit("c", 7, epoch, expected=3)
    assert await backend.positions.load("c") == 7


async def test_the_high_water_mark_is_never_lowered(backend: Backend) -> None:
    """After a reset back to 3, the position is 3 and the high-water mark stays at 10, also
    through later commits below it."""
    epoch = await backend.take_lease("c")
    await backend.commit("c", 10, epoch, expected=0)
    await backend.positions.set("c", 3)
    assert (await backend.positions.load("c"), await backend.positions.high_water("c")) == (3, 10)
    await backend.commit("c", 6, epoch, expected=3)
    assert (await backend.positions.load("c"), await backend.positions.high_water("c")) == (6, 10)
    await backend.commit("c", 12, epoch, expected=6)
    assert await backend.positions.high_water("c") == 12


async def test_a_commit_in_a_rolled_back_transaction_is_undone(backend: Backend) -> None:
    """The position commits with the batch: when the batch rolls back, so does the position."""
    epoch = await backend.take_lease("c")
    await backend.commit("c", 4, epoch, expected=0)
    with pytest.raises(RuntimeError):
        async with backend.transactions.transaction() as conn:
            await backend.positions.commit(conn, "c", 9, epoch, 4)
            raise RuntimeError("batch failed after the commit")
    assert (await backend.positions.load("c"), await backend.positions.high_water("c")) == (4, 4)
    await backend.commit("c", 9, epoch, expected=4)
    assert await backend.positions.load("c") == 9


async def test_the_lease_epoch_is_read_in_the_caller_s_transaction(backend: Backend) -> None:
    """Inside a transaction, the consumer's current lease epoch is read (``None`` before any
    lease), as a replay checks it before its commit."""
    async with backend.transactions.transaction() as conn:
        assert await backend.positions.lease_epoch_in(conn, "c") is None
    epoch = await backend.take_lease("c")
    async with backend.transactions.transaction() as conn:
        assert await backend.positions.lease_epoch_in(conn, "c") == epoch
