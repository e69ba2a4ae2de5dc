"""Snapshots against the genuine MessageDB: written every threshold events, used on load."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from pydantic import Field
from structlog.testing import capture_logs

from worker import (
    BaseAggregate,
    BaseEvent,
    Domain,
    MessageStore,
    NewMessage,
    VersionConflictError,
    apply,
)
from worker.model.snapshot import SNAPSHOT_TYPE
from worker.ops.settings import DomainSettings, Settings

if TYPE_CHECKING:
    import asyncpg

    from worker.store.message import Message

pytestmark = pytest.mark.anyio

ledger = Domain("ledger")


@ledger.aggregate(is_event_sourced=True, snapshot_threshold=100)
class Counter(BaseAggregate):
    """Counts bumps; a snapshot every 100 events."""

    name: str = Field(max_length=20)
    value: int = 0

    @classmethod
    def create(cls, name: str) -> Counter:
        counter = cls(name=name)
        counter.raise_(Created(name=name))
        return counter

    @apply
    def when_created(self, event: Created) -> None:
        self.name = event.name

    @apply
    def when_bumped(self, event: Bumped) -> None:
        self.value += event.by


@ledger.aggregate(is_event_sourced=True)
class Tally(BaseAggregate):
    """Like Counter, with the domain's snapshot threshold."""

    value: int = 0

    @apply
    def when_bumped(self, event: Bumped) -> None:
        self.value += event.by


@ledger.event
class Created(BaseEvent):
    name: str


@ledger.event
class Bumped(BaseEvent):
    by: int = 1


class CountingStore(MessageStore):
    """A real message store that counts the stream messages it reads."""

    def __init__(self, executor: asyncpg.Pool[Any]) -> None:
        super().__init__(executor)
        self.read = 0

    async def read_stream(self, *args: Any, **kwargs: Any) -> list[Message]:
        batch = await super().read_stream(*args, **kwargs)
        self.read += len(batch)
        return batch


def bump(aggregate: Counter | Tally, times: int) -> None:
    for _ in range(times):
        aggregate.raise_(Bumped())


async def snapshot_versions(store: MessageStore, category: str, ident: str) -> list[int]:
    messages = await store.read_stream(f"{category}:snapshot-{ident}")
    return [m.data["version"] for m in messages]


async def test_thousand_events_load_from_the_latest_snapshot(pool: asyncpg.Pool[Any]) -> None:
    """1,000 events saved 95 at a time, then 50: load reads only the 50 after the snapshot."""
    store = CountingStore(pool)
    counters = ledger.repository_for(Counter, store)
    counter = Counter.create("c")
    bump(counter, 94)
    await counters.add(counter)
    for _ in range(9):
        bump(counter, 95)
        await counters.add(counter)
    bump(counter, 50)
    await counters.add(counter)
    assert await snapshot_versions(store, "counter", counter.id) == [190, 380, 570, 760, 950]

    store.read = 0
    loaded = await counters.get(counter.id)
    assert store.read == 50
    assert (loaded.value, loaded.version, loaded.stored_version) == (999, 1000, 1000)
    assert loaded.model_dump() == counter.model_dump()


async def test_domain_threshold_from_settings_applies(store: MessageStore) -> None:
    """Without its own threshold, an aggregate snapshots every [domain] snapshot_threshold."""
    ledger.configure(Settings(domain=DomainSettings(snapshot_threshold=4)))
    try:
        tallies = ledger.repository_for(Tally, store)
        tally = Tally()
        for _ in range(9):
            bump(tally, 1)
            await tallies.add(tally)
    finally:
        ledger.configure(Settings())
    assert await snapshot_versions(store, "tally", tally.id) == [4, 8]


async def test_invalid_snapshot_falls_back_to_full_replay(pool: asyncpg.Pool[Any]) -> None:
    """A snapshot that no longer validates is ignored with a warning; all events replay."""
    store = CountingStore(pool)
    counters = ledger.repository_for(Counter, store)
    counter = Counter.create("c")
    bump(counter, 29)
    await counters.add(counter)
    stale = {"version": 20, "state": {"id": counter.id, "name": "c", "value": 20, "old": 1}}
    await store.write(f"counter:snapshot-{counter.id}", NewMessage(SNAPSHOT_TYPE, stale))

    with capture_logs() as logs:
        loaded = await counters.get(counter.id)

    assert (loaded.name, loaded.value, loaded.version, store.read) == ("c", 29, 30, 30)
    [warning] = [entry for entry in logs if entry["event"] == "snapshot ignored"]
    assert warning["log_level"] == "warning"
    assert warning["stream_name"] == f"counter:snapshot-{counter.id}"


async def test_conflicting_save_writes_no_snapshot(store: MessageStore) -> None:
    """A snapshot commits with its events: a save that conflicts leaves no snapshot either."""
    counters = ledger.repository_for(Counter, store)
    counter = Counter.create("c")
    bump(counter, 9)
    await counters.add(counter)
    first, second = await counters.get(counter.id), await counters.get(counter.id)
    bump(first, 1)
    await counters.add(first)
    bump(second, 100)
    with pytest.raises(VersionConflictError):
        await counters.add(second)
    assert await snapshot_versions(store, "counter", counter.id) == []
    assert await store.stream_version(f"counter-{counter.id}") == 10


async def test_a_snapshot_in_the_callers_transaction_rolls_back_with_it(
    store: MessageStore, pool: asyncpg.Pool[Any]
) -> None:
    """A save that is due a snapshot, made with conn=tx, and the caller rolls back: neither the
    events nor the snapshot remain (the snapshot is written in the caller's transaction)."""
    counters = ledger.repository_for(Counter, store)
    counter = Counter.create("c")
    bump(counter, 99)

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with pool.acquire() as conn, conn.transaction():
            await counters.add(counter, conn=conn)
            name = f"counter:snapshot-{counter.id}"
            assert await store.stream_version(name, conn=conn) == 0
            raise Abort
    assert await snapshot_versions(store, "counter", counter.id) == []
    assert await store.stream_version(f"counter-{counter.id}") is None
