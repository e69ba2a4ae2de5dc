"""What the worker schema keeps for a consumer beside its committed position: its high-water
mark, the refill mark of an in-place rebuild, its pause, its projection's generation; and the
seeding of a slot seen for the first time."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from worker.engine import handover, pauses
from worker.engine import queries as q
from worker.engine.positions import seed_from_former_slots
from worker.read import generations
from worker.store.group_index import group_index_ready

if TYPE_CHECKING:
    import asyncpg

    from worker.engine.subscriber import Slot
    from worker.store.message_store import MessageStore


@dataclass(frozen=True, slots=True)
class Standing:
    """A consumer's stored position, its high-water mark, and where a refill ends (if any)."""

    position: int = 0
    high_water: int = 0
    refill_to: int | None = None
    # After its group was resized: (the size before, its members' final positions), whose
    # messages it leaves out up to the furthest of them (``worker.engine.handover``).
    handed: tuple[int, tuple[int, ...]] | None = None
    indexed: bool = True  # False: a group member whose size has no member index


def _handed(found: handover.Record | None, size: int) -> tuple[int, tuple[int, ...]] | None:
    """What a member of a resized group leaves out (see ``Standing.handed``)."""
    if found is None or found.size != size or found.from_size is None:
        return None
    return found.from_size, found.handed


class PostgresStanding:
    """Consumers' standings in the worker schema (``worker.positions``, ``worker.paused``,
    ``worker.projections``)."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def load(self, consumer: str) -> Standing | None:
        """The consumer's standing; ``None`` when it was never seen."""
        row = await self._pool.fetchrow(q.LOAD_CURSOR, consumer)
        if row is None:
            return None
        return Standing(row[0] or 0, row[1] or 0, row[2])

    async def _grouped(self, consumer: str, standing: Standing) -> Standing:
        """``standing`` with what its consumer group adds (``handed``, ``indexed``)."""
        group = handover.group_of(consumer)
        if group is None:
            return standing
        async with self._pool.acquire() as conn:
            found = await handover.record(conn, group[0])
            indexed = group[1] == 1 or await group_index_ready(conn, group[1])
        return replace(standing, handed=_handed(found, group[1]), indexed=indexed)

    async def load_or_seed(
        self, consumer: str, slot: Slot, store: MessageStore, log: Any, seeds: bool
    ) -> Standing:
        """The consumer's standing; ``seeds``: seed it first when it was never seen."""
        standing = await self.load(consumer)
        if standing is None and seeds:
            await self.seed(slot, store, log)
            standing = await self.load(consumer)
        return await self._grouped(consumer, standing or Standing())

    async def seed(self, slot: Slot, store: MessageStore, log: Any) -> None:
        """A consumer seen for the first time: a group member after a resize starts where the
        former members were; a subscriber declared ``start_from="head"`` at its category's
        head (later runs resume from their position)."""
        seeded = await seed_from_former_slots(self._pool, slot.consumer)
        if seeded is not None:
            log.info("position seeded from the former group slots", position=seeded)
        elif slot.subscriber.start_from == "head":
            head = await store.category_head(slot.category) or 0
            if await self._pool.fetchval(q.SEED_POSITION, slot.name, head, head) is not None:
                log.info("position seeded at the category head (start_from=head)", head=head)

    async def end_refill(self, consumer: str) -> None:
        """The refill of an in-place rebuild caught up."""
        await self._pool.execute(q.END_REFILL, consumer)

    async def is_paused(self, consumer: str) -> bool:
        """Whether an operator paused the consumer."""
        return await pauses.is_paused(self._pool, consumer)

    async def generation(self, projection: str) -> int:
        """The table generation a projection's live consumers write to."""
        found = await generations.state(self._pool, projection)
        return found[0] if found else 1
