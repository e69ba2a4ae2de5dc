"""The storage seam: what the engine keeps where, behind protocols it really uses.

A consumer and its replays run no SQL and build no store: a ``Backend`` hands them positions,
parked messages, standings (refills, pauses, generations), transactions, the message store and
leases. ``PostgresBackend`` keeps them in the worker schema and MessageDB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from worker.engine.dead_letters import PostgresParkedMessages
from worker.engine.deadlines import PostgresDeadlines
from worker.engine.lease import Lease
from worker.engine.pauses import Switch
from worker.engine.positions import PostgresPositionStore
from worker.engine.standing import PostgresStanding
from worker.read.table import Table
from worker.store.message_store import MessageStore
from worker.store.transactions import PoolTransactions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import anyio
    import asyncpg

    from worker.engine.contact import Contact
    from worker.engine.dead_letters import ParkedMessages
    from worker.engine.deadlines import Deadlines
    from worker.engine.positions import PositionStore
    from worker.engine.standing import Standing
    from worker.engine.subscriber import Slot
    from worker.read.table import TableFactory
    from worker.store.database import Database
    from worker.store.transactions import Transactions


class Standings(Protocol):
    """What is kept beside a consumer's position: its refill mark, its pause, its projection's
    generation; and the seeding of a slot seen for the first time."""

    async def load_or_seed(
        self, consumer: str, slot: Slot, store: MessageStore, log: Any, seeds: bool
    ) -> Standing: ...

    async def end_refill(self, consumer: str) -> None: ...

    async def is_paused(self, consumer: str) -> bool: ...

    async def generation(self, projection: str) -> int: ...


class PauseSwitch(Protocol):
    """Whether one consumer is paused, looked up now and then."""

    async def changed(self, *, force: bool = False) -> bool | None:
        """The new pause state when it changed since the last look; ``None`` otherwise."""
        ...


class ConsumerLease(Protocol):
    """The right to run one consumer, fenced by its ``epoch`` (``worker.engine.lease``)."""

    consumer: str
    epoch: int
    holder: str | None  # who holds it, when another process does
    lost: str | None  # why it was lost, once it was
    retry_interval: float  # how often a standby looks whether it has become free
    contact: Contact  # whether its round trips reach the database

    @property
    def held(self) -> bool:
        """True while it is ours and recent enough to act on."""
        ...

    async def open(self) -> None: ...

    async def try_acquire(self, *, keep_connection: bool = False) -> bool: ...

    async def acquire(
        self, stop: anyio.Event | None = None, limiter: anyio.CapacityLimiter | None = None
    ) -> bool: ...

    async def renew(self) -> None: ...

    async def hold(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` while keeping the lease (cancelled once it is lost)."""
        ...

    async def report(self, state: str) -> None: ...

    async def release(self, *, close: bool = True) -> None: ...

    async def close(self) -> None: ...


class Backend(Protocol):
    """Where the engine keeps its state (see the module doc). ``commit_behind``: whether a
    projector's full batches may commit behind the next one (``worker.engine.pipeline``)."""

    @property
    def store(self) -> MessageStore: ...

    @property
    def transactions(self) -> Transactions: ...

    @property
    def positions(self) -> PositionStore: ...

    @property
    def parked(self) -> ParkedMessages: ...

    @property
    def standings(self) -> Standings: ...

    @property
    def tables(self) -> TableFactory: ...

    @property
    def commit_behind(self) -> bool: ...

    @property
    def deadlines(self) -> Deadlines:
        """Process managers' deadlines (``worker.engine.deadlines``)."""
        ...

    def lease(self, consumer: str, ttl: float) -> ConsumerLease:
        """The consumer's lease (fenced by its epoch)."""
        ...

    def pause_switch(self, consumer: str, interval: float) -> PauseSwitch:
        """Whether an operator paused the consumer, looked up at most once per ``interval``."""
        ...


class PostgresBackend:
    """The engine's state in PostgreSQL: the worker schema and MessageDB."""

    def __init__(
        self,
        dsn: str | Database,
        pool: asyncpg.Pool[Any],
        store: MessageStore | None = None,
        positions: PositionStore | None = None,
    ) -> None:
        self._dsn, self._pool = dsn, pool
        self.store: MessageStore = store or MessageStore(pool)
        self.transactions: Transactions = PoolTransactions(pool)
        self.positions: PositionStore = positions or PostgresPositionStore(pool)
        self.parked: ParkedMessages = PostgresParkedMessages(pool)
        self.standings: Standings = PostgresStanding(pool)
        self.tables: TableFactory = Table
        self.commit_behind = True
        self.deadlines: Deadlines = PostgresDeadlines(pool)

    def lease(self, consumer: str, ttl: float) -> Lease:
        return Lease(self._dsn, consumer, ttl=ttl)

    def pause_switch(self, consumer: str, interval: float) -> Switch:
        return Switch(self._pool, consumer, interval)
