"""``MemoryBackend``: the engine's ``Backend`` on the in-memory stand-ins, so the real
``Consumer`` (and its replays of parked messages) runs in tests without a database.

Its lease is always held (no other process exists in memory), its pauses are set by the test
(``pause``), its standings are the positions' (no refill, generation 1), and its read-model
tables are ``MemoryReadModels``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from worker.engine.contact import Contact
from worker.engine.lease import DEFAULT_TTL
from worker.engine.standing import Standing
from worker.testing.connection import MemoryTransactions
from worker.testing.deadlines import MemoryDeadlines
from worker.testing.message_store import MemoryMessageStore
from worker.testing.parked import MemoryParkedMessages
from worker.testing.positions import MemoryPositionStore
from worker.testing.table import MemoryReadModels

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import anyio

    from worker.engine.subscriber import Slot
    from worker.store.message_store import MessageStore


class MemoryLease:
    """A lease no other process can hold: taken at once with a new epoch of ``positions``,
    held until released; ``states`` records what its consumer reported."""

    def __init__(self, positions: MemoryPositionStore, consumer: str, ttl: float) -> None:
        self._positions, self.consumer, self.ttl = positions, consumer, ttl
        self.epoch = 0
        self.holder: str | None = None  # (no other process)
        self.lost: str | None = None
        self.retry_interval = 1.0
        self.contact = Contact()
        self.held = False
        self.states: list[str] = []

    async def open(self) -> None:
        return None

    async def try_acquire(self, *, keep_connection: bool = False) -> bool:
        self.epoch, self.held, self.lost = self._positions.take_lease(self.consumer), True, None
        return True

    async def acquire(
        self, stop: anyio.Event | None = None, limiter: anyio.CapacityLimiter | None = None
    ) -> bool:
        return await self.try_acquire()

    async def renew(self) -> None:
        return None

    async def hold(self, work: Callable[[], Awaitable[None]]) -> None:
        await work()

    async def report(self, state: str) -> None:
        self.states.append(state)

    async def release(self, *, close: bool = True) -> None:
        self.held = False

    async def close(self) -> None:
        await self.release()


class MemorySwitch:
    """Whether one consumer is paused, as the test set it on its ``MemoryBackend``."""

    def __init__(self, paused: set[str], consumer: str) -> None:
        self._paused, self._consumer, self._seen = paused, consumer, False

    async def changed(self, *, force: bool = False) -> bool | None:
        """The new pause state when it changed since the last look; ``None`` otherwise."""
        paused = self._consumer in self._paused
        if paused == self._seen:
            return None
        self._seen = paused
        return paused


class MemoryStandings:
    """Standings kept by the in-memory positions: no refills, generation 1, pauses as set."""

    def __init__(self, positions: MemoryPositionStore, paused: set[str]) -> None:
        self._positions, self._paused = positions, paused

    async def load_or_seed(
        self, consumer: str, slot: Slot, store: MessageStore, log: Any, seeds: bool
    ) -> Standing:
        """The consumer's position and high-water mark (a first run starts at 0)."""
        positions = self._positions
        return Standing(await positions.load(consumer), await positions.high_water(consumer))

    async def end_refill(self, consumer: str) -> None:
        return None

    async def is_paused(self, consumer: str) -> bool:
        return consumer in self._paused

    async def generation(self, projection: str) -> int:
        return 1


class MemoryBackend:
    """The engine's state in memory (see the module doc); each part may be given, to carry
    on from an earlier run."""

    commit_behind = False  # in memory a commit costs nothing to wait for

    def __init__(
        self,
        store: MemoryMessageStore | None = None,
        *,
        positions: MemoryPositionStore | None = None,
        parked: MemoryParkedMessages | None = None,
        tables: MemoryReadModels | None = None,
        transactions: MemoryTransactions | None = None,
        deadlines: MemoryDeadlines | None = None,
    ) -> None:
        self.memory_store = store if store is not None else MemoryMessageStore()
        # The engine names its PostgreSQL message store; the stand-in answers the same calls.
        self.store = cast("MessageStore", self.memory_store)
        self.transactions = transactions or MemoryTransactions()
        self.positions = positions or MemoryPositionStore()
        self.parked = parked or MemoryParkedMessages()
        self.tables = tables or MemoryReadModels()
        self.deadlines = deadlines or MemoryDeadlines()
        self.paused: set[str] = set()
        self.standings = MemoryStandings(self.positions, self.paused)
        self.leases: dict[str, MemoryLease] = {}

    def lease(self, consumer: str, ttl: float = DEFAULT_TTL) -> MemoryLease:
        """The consumer's lease (a new epoch each time it is taken)."""
        lease = self.leases[consumer] = MemoryLease(self.positions, consumer, ttl)
        return lease

    def pause_switch(self, consumer: str, interval: float) -> MemorySwitch:
        """Whether the test paused the consumer (``paused``)."""
        return MemorySwitch(self.paused, consumer)
