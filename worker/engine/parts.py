"""What a consumer runs with, built on PostgreSQL: its lease, batches, replays, reads, standing
and pause switch (the consumer itself builds nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.engine.batch import Batches
from worker.engine.dead_letters import PostgresParkedMessages
from worker.engine.lease import Lease
from worker.engine.pauses import Switch
from worker.engine.reader import Reader
from worker.engine.replays import Replays
from worker.engine.routes import route_table
from worker.engine.standing import PostgresStanding
from worker.store.transactions import PoolTransactions

if TYPE_CHECKING:
    import asyncpg

    from worker.engine.cursor import Cursor
    from worker.engine.positions import PositionStore
    from worker.engine.subscriber import Slot
    from worker.engine.tuning import ConsumerOptions
    from worker.engine.wakeups import Waker
    from worker.store.message_store import MessageStore


@dataclass(frozen=True, slots=True)
class Parts:
    """A consumer's collaborators."""

    lease: Lease
    batches: Batches
    replays: Replays
    reader: Reader
    standing: PostgresStanding
    pause: Switch
    positions: PositionStore
    store: MessageStore
    waker: Waker


@dataclass(frozen=True, slots=True)
class Wiring:
    """Where a consumer's parts connect: the database and the engine's shared services."""

    dsn: str
    pool: asyncpg.Pool[Any]
    store: MessageStore
    positions: PositionStore
    waker: Waker


def postgres_parts(
    name: str,
    slot: Slot,
    instance: object,
    cursor: Cursor,
    wiring: Wiring,
    options: ConsumerOptions,
    log: Any,
) -> Parts:
    """The parts of consumer ``name`` of ``slot`` (handlers: ``instance``), on PostgreSQL."""
    pool, subscriber = wiring.pool, slot.subscriber
    lease = Lease(wiring.dsn, name, ttl=options.lease_ttl)
    transactions, parked = PoolTransactions(pool), PostgresParkedMessages(pool)
    batches = Batches(
        name,
        routes=route_table(subscriber, instance),
        transactions=transactions,
        store=wiring.store,
        positions=wiring.positions,
        parked=parked,
        lease=lease,
        policy=options.policy,
        cursor=cursor,
        log=log,
        concurrency=subscriber.concurrent,
        position_interval=options.position_interval,
        commit_behind=bool(subscriber.read_models),
        declared=subscriber.declared,
    )
    replays = Replays(
        batches,
        transactions=transactions,
        parked=parked,
        positions=wiring.positions,
        store=wiring.store,
        lease=lease,
        refresh_interval=options.refresh_interval,
        log=log,
    )
    return Parts(
        lease=lease,
        batches=batches,
        replays=replays,
        reader=Reader(wiring.store, wiring.waker, slot, options, log),
        standing=PostgresStanding(pool),
        pause=Switch(pool, name, options.refresh_interval),
        positions=wiring.positions,
        store=wiring.store,
        waker=wiring.waker,
    )
