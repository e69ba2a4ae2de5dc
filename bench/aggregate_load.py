"""Benchmark: load time of an event-sourced aggregate of 10,000 events, with or without a snapshot.

Run ``.venv/bin/python -m bench.aggregate_load`` (``--help`` for options). It uses the PostgreSQL of
``WORKER_EVENT_STORE__DATABASE_URI`` (or the embedded server), installs MessageDB into a scratch
database ``worker_bench_aggregate`` and drops it afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import TYPE_CHECKING, Any

import anyio

from worker import (
    BaseAggregate,
    BaseEvent,
    Domain,
    MessageStore,
    apply,
    connect,
    create_pool,
    install,
    load_settings,
    resolve_dsn,
)
from worker.admin import quote_identifier, with_database

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

SCRATCH = "worker_bench_aggregate"

bench = Domain("bench")


class Account(BaseAggregate):
    """A balance moved by deposits: the smallest realistic event-sourced aggregate."""

    owner: str
    balance: int = 0
    deposits: int = 0

    @apply
    def when_opened(self, event: Opened) -> None:
        self.owner = event.owner

    @apply
    def when_deposited(self, event: Deposited) -> None:
        self.balance += event.amount
        self.deposits += 1


@bench.aggregate(is_event_sourced=True, snapshot_threshold=10**9)
class PlainAccount(Account):
    """Never snapshotted: every load replays the whole stream."""


@bench.aggregate(is_event_sourced=True, snapshot_threshold=100)
class SnapshotAccount(Account):
    """Snapshotted every 100 events."""


@bench.event
class Opened(BaseEvent):
    owner: str


@bench.event
class Deposited(BaseEvent):
    amount: int


async def fill(store: MessageStore, cls: type[Account], events: int, tail: int) -> str:
    """An account with ``events`` events; the last ``tail`` of them saved after the snapshot."""
    repo = bench.repository_for(cls, store)
    account = cls(owner="bench")
    account.raise_(Opened(owner="bench"))
    for count in (events - tail - 1, tail):
        for _ in range(count):
            account.raise_(Deposited(amount=1))
        await repo.add(account)
    return account.id


async def median_seconds(action: Callable[[], Awaitable[Any]], repeat: int) -> float:
    """Median wall time of ``repeat`` runs of ``action`` (after one warm-up run)."""
    await action()
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        await action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


async def apply_rate(store: MessageStore, ident: str, repeat: int) -> float:
    """Events decoded and applied per second, in memory, on messages read once beforehand."""
    messages = [m async for m in store.iter_stream(f"plain_account-{ident}")]

    async def replay() -> None:
        account = PlainAccount.model_construct(id=ident)
        for message in messages:
            event = bench.decode(message)
            assert event is not None
            account._apply(event)

    return len(messages) / await median_seconds(replay, repeat)


async def measure(dsn: str, events: int, repeat: int) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    async with MessageStore(pool) as store:
        plain = await fill(store, PlainAccount, events, tail=99)
        snap = await fill(store, SnapshotAccount, events, tail=99)
        plain_repo = bench.repository_for(PlainAccount, store)
        snap_repo = bench.repository_for(SnapshotAccount, store)
        assert (await plain_repo.get(plain)).version == events
        assert (await snap_repo.get(snap)).version == events
        no_snapshot = await median_seconds(lambda: plain_repo.get(plain), repeat)
        with_snapshot = await median_seconds(lambda: snap_repo.get(snap), repeat)
        in_memory = await apply_rate(store, plain, repeat)
    rows = [
        ("events per aggregate", f"{events:,}"),
        ("load, no snapshot (replays all)", f"{no_snapshot * 1000:.1f} ms"),
        ("load, snapshot_threshold 100 (99 events after it)", f"{with_snapshot * 1000:.1f} ms"),
        ("replay in a load (read + decode + apply)", f"{events / no_snapshot:,.0f} events/s"),
        ("replay in memory (decode + apply)", f"{in_memory:,.0f} events/s"),
    ]
    for label, value in rows:
        print(f"{label:<52} {value:>16}")


async def admin(dsn: str, statement: str) -> None:
    conn = await connect(with_database(dsn, "postgres"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def main(events: int, repeat: int) -> None:
    settings = load_settings()
    server = resolve_dsn(settings)
    scratch = with_database(server, SCRATCH)
    drop = f"DROP DATABASE IF EXISTS {quote_identifier(SCRATCH)} WITH (FORCE)"
    await admin(server, drop)
    await install(scratch, settings.message_db)
    try:
        await measure(scratch, events, repeat)
    finally:
        await admin(server, drop)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=10_000, help="events per aggregate")
    parser.add_argument("--repeat", type=int, default=7, help="timed loads per case (median)")
    args = parser.parse_args()
    anyio.run(main, args.events, args.repeat)


if __name__ == "__main__":
    cli()
