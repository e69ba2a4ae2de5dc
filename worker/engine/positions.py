"""Where consumers keep their read positions: the worker schema, in the batch's transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from worker.engine import queries as q
from worker.engine.names import ConsumerName
from worker.errors import LeaseLostError, PositionMovedError

if TYPE_CHECKING:
    import asyncpg

    from worker.store.types import Connection


class PositionStore(Protocol):
    """Loads and commits the global position of the last message a consumer handled."""

    async def load(self, consumer: str) -> int:
        """The committed position, 0 when the consumer never committed."""
        ...

    async def commit(
        self, conn: Connection, consumer: str, position: int, epoch: int, expected: int
    ) -> None:
        """Record ``position`` inside the caller's transaction, if lease ``epoch`` is current
        and the committed position is still ``expected`` (where the batch started)."""
        ...

    async def high_water(self, consumer: str) -> int:
        """The highest position ever committed (above ``load`` after a reset)."""
        ...

    async def lease_epoch(self, consumer: str) -> int | None:
        """The consumer's current lease epoch (``None``: no lease was ever taken)."""
        ...

    async def lease_epoch_in(self, conn: Connection, consumer: str) -> int | None:
        """``lease_epoch`` read in the caller's transaction, which it holds against a takeover
        until the transaction ends."""
        ...


class PostgresPositionStore:
    """Positions in ``worker.positions``, fenced by the consumer's lease epoch."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def load(self, consumer: str) -> int:
        position: int | None = await self._pool.fetchval(q.LOAD_POSITION, consumer)
        return position or 0

    async def high_water(self, consumer: str) -> int:
        value: int | None = await self._pool.fetchval(q.LOAD_HIGH_WATER, consumer)
        return value or 0

    async def lease_epoch(self, consumer: str) -> int | None:
        epoch: int | None = await self._pool.fetchval(q.LEASE_EPOCH, consumer)
        return epoch

    async def lease_epoch_in(self, conn: Connection, consumer: str) -> int | None:
        epoch: int | None = await conn.fetchval(q.LEASE_EPOCH_SHARED, consumer)
        return epoch

    async def commit(
        self, conn: Connection, consumer: str, position: int, epoch: int, expected: int
    ) -> None:
        if await conn.fetchval(q.COMMIT_POSITION, consumer, position, epoch, expected) is not None:
            return
        if await conn.fetchval(q.LEASE_EPOCH, consumer) != epoch:
            raise LeaseLostError(
                f"consumer {consumer!r} lost its lease (epoch {epoch} is no longer current)"
            )
        raise PositionMovedError(
            f"consumer {consumer!r} is no longer at position {expected}: starting again from "
            "its committed position"
        )

    async def set(self, consumer: str, position: int) -> None:
        """Set a position outside any batch (``worker reset``); the caller holds the lease."""
        await self._pool.execute(q.SET_POSITION, consumer, position)


async def reset_held(pool: asyncpg.Pool[Any], consumer: str, position: int) -> int:
    """Set the position of a consumer another process holds (``worker reset --wait``), in one
    transaction: fence the holder (once its batch in flight has committed; any later commit of
    it fails), set the position, tell it on the control channel. It takes the lease back at
    once and goes on from the new position. Returns the position before."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(q.FENCE_LEASE, consumer)
        before: int | None = await conn.fetchval(q.LOAD_POSITION, consumer)
        await conn.execute(q.SET_POSITION, consumer, position)
        await conn.execute(q.NOTIFY_CONTROL, consumer)
    return before or 0


async def seed_from_former_slots(pool: asyncpg.Pool[Any], slot: ConsumerName) -> int | None:
    """Give a slot seen for the first time after its group was resized the least position of
    the category's former slots (any other group size, or none), with their furthest as its
    high-water mark, so it replays safely up to there. Rebuild consumers never count. Returns
    the position given, or ``None`` (the slot had one, or there were no former slots)."""
    rows = await pool.fetch(q.POSITIONS_OF_CATEGORY, slot.base, slot.group_prefix)
    former = [
        row
        for row in rows
        if (name := ConsumerName.parse(row["consumer"])) is not None
        and name != slot
        and not name.is_building
        and (slot.size is None or name.size != slot.size)
    ]
    if not former:
        return None
    low = min(row["position"] for row in former)
    high = max(row["high_water"] for row in former)
    seeded: int | None = await pool.fetchval(q.SEED_POSITION, str(slot), low, high)
    return seeded
