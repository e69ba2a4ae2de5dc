"""Batches whose transaction begins with their first statement, and positions that wait while
a consumer is behind (``[worker] position_interval``), against the genuine MessageDB."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest

from worker import BaseEvent, Context, Domain, MessageStore, Runner, on
from worker.engine import pauses
from worker.ops.settings import WorkerSettings
from worker.store.database import connect
from worker.store.transactions import LazyTransaction, PoolTransactions, begun, plain

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from worker.store.types import Connection

pytestmark = pytest.mark.anyio

BATCH = 20


class Ticked(BaseEvent):
    n: int


async def write_ticks(store: MessageStore, count: int) -> None:
    for n in range(count):
        await store.write(f"tick-{n % 3}", Ticked(n=n).to_message())


async def committed(dsn: str, consumer: str) -> int:
    """The consumer's committed position, read outside any batch."""
    conn = await connect(dsn)
    try:
        value: int | None = await conn.fetchval(
            "SELECT position FROM worker.positions WHERE consumer = $1", consumer
        )
        return value or 0
    finally:
        await conn.close()


def ticking_domain(dsn: str, seen: dict[int, int], *, writes: bool) -> Domain:
    """A projector noting, at the first message of each batch, the committed position (read on
    a connection of its own); with ``writes``, it also writes a row per message on ctx.conn."""
    domain = Domain("test")
    domain.register_event(Ticked, category="tick")

    @domain.projector(name="ticks", stream_categories=["tick"])
    class Ticks:
        async def setup(self, conn: Any) -> None:
            await conn.execute("CREATE TABLE IF NOT EXISTS ticks (n int PRIMARY KEY)")

        @on(Ticked)
        async def ticked(self, event: Ticked, ctx: Context) -> None:
            if event.n % BATCH == 0:
                seen[event.n // BATCH] = await committed(dsn, "ticks:tick")
            if writes:
                await ctx.conn.execute("INSERT INTO ticks (n) VALUES ($1)", event.n)

    return domain


def settings(position_interval: float) -> WorkerSettings:
    return WorkerSettings(batch_size=BATCH, position_interval=position_interval)


async def test_batches_that_write_nothing_leave_their_position_for_later_while_behind(
    store: MessageStore, database_dsn: str
) -> None:
    """Five full batches that write nothing: within the interval, no batch commits its
    position on its own; catching up commits it, once, at the end."""
    await write_ticks(store, 5 * BATCH)
    seen: dict[int, int] = {}
    runner = Runner(ticking_domain(database_dsn, seen, writes=False), database_dsn, settings(60))
    await runner.run(until_caught_up=True, handle_signals=False)
    assert seen == dict.fromkeys(range(5), 0)
    assert await committed(database_dsn, "ticks:tick") == await store.category_head("tick")


@pytest.mark.parametrize(
    ("writes", "interval"),
    [(False, 0), (True, 60)],
    ids=["interval 0, writing nothing", "writing, interval 60"],
)
async def test_every_batch_commits_its_position_when_it_writes_or_with_interval_0(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str, writes: bool, interval: float
) -> None:
    await write_ticks(store, 5 * BATCH)
    head = await store.category_head("tick")
    assert head is not None
    seen: dict[int, int] = {}
    domain = ticking_domain(database_dsn, seen, writes=writes)
    await Runner(domain, database_dsn, settings(interval)).run(
        until_caught_up=True, handle_signals=False
    )
    first = head - 5 * BATCH  # the global position before the first tick
    assert seen == {b: first + b * BATCH if b else 0 for b in range(5)}
    assert await committed(database_dsn, "ticks:tick") == head
    if writes:
        assert await pool.fetchval("SELECT count(*) FROM ticks") == 5 * BATCH


def noting_domain(handled: list[int], then: Callable[[int], Awaitable[None]]) -> Domain:
    """A projector that notes each tick it handles in ``handled``, then awaits ``then(n)``."""
    domain = Domain("test")
    domain.register_event(Ticked, category="tick")

    @domain.projector(name="ticks", stream_categories=["tick"])
    class Ticks:
        @on(Ticked)
        async def ticked(self, event: Ticked, ctx: Context) -> None:
            handled.append(event.n)
            await then(event.n)

    return domain


async def test_a_stopped_consumer_commits_what_it_handled(
    store: MessageStore, database_dsn: str
) -> None:
    """Stopped while behind (positions waiting), the consumer commits the position it reached;
    the next run starts there and hands no message over twice."""
    await write_ticks(store, 6 * BATCH)
    handled: list[int] = []
    runners: list[Runner] = []

    async def stop_at_three_batches(n: int) -> None:
        if len(handled) == 3 * BATCH:
            runners[0].request_stop()

    domain = noting_domain(handled, stop_at_three_batches)
    runners.append(Runner(domain, database_dsn, settings(60)))
    await runners[0].run(handle_signals=False)
    reached = await committed(database_dsn, "ticks:tick")
    assert len(handled) >= 3 * BATCH
    assert reached == await pool_position_of(store, handled[-1])
    await Runner(domain, database_dsn, settings(60)).run(until_caught_up=True, handle_signals=False)
    assert sorted(handled) == list(range(6 * BATCH))


async def test_a_consumer_paused_while_behind_commits_what_it_handled(
    store: MessageStore, database_dsn: str
) -> None:
    """Paused by an operator while its positions wait, the consumer commits the position it
    reached before it holds still."""
    await write_ticks(store, 6 * BATCH)
    handled: list[int] = []

    async def pause_at_two_batches(n: int) -> None:
        if n == 2 * BATCH:  # pause, then outlast the consumer's pause look-up interval
            conn = await connect(database_dsn)
            try:
                await pauses.pause(conn, ["ticks:tick"], by="test")
            finally:
                await conn.close()
            await anyio.sleep(1.1)

    domain = noting_domain(handled, pause_at_two_batches)
    await Runner(domain, database_dsn, settings(60)).run(until_caught_up=True, handle_signals=False)
    assert len(handled) < 6 * BATCH  # it paused before the end
    assert await committed(database_dsn, "ticks:tick") == await pool_position_of(store, handled[-1])


async def pool_position_of(store: MessageStore, n: int) -> int:
    """The global position of tick ``n``."""
    for message in await store.read_category("tick", 1, 10_000):
        if message.data["n"] == n:
            return message.global_position
    raise AssertionError(f"tick {n} not found")


# -- the lazy transaction itself ------------------------------------------------------------


async def test_the_transaction_begins_with_the_first_statement_and_commits_at_the_end(
    pool: asyncpg.Pool[Any],
) -> None:
    await pool.execute("CREATE TABLE lazy_rows (n int)")
    transactions = PoolTransactions(pool)
    async with transactions.lazy() as conn:
        assert not begun(conn)
        assert not plain(conn).is_in_transaction()
        await conn.execute("INSERT INTO lazy_rows VALUES (1)")
        assert begun(conn)
        assert plain(conn).is_in_transaction()
        # Not visible outside before the end: one transaction.
        assert await pool.fetchval("SELECT count(*) FROM lazy_rows") == 0
    assert await pool.fetchval("SELECT count(*) FROM lazy_rows") == 1


async def test_a_failure_rolls_back_what_ran_and_nothing_begun_costs_nothing(
    pool: asyncpg.Pool[Any],
) -> None:
    await pool.execute("CREATE TABLE lazy_rows (n int)")
    transactions = PoolTransactions(pool)
    with pytest.raises(RuntimeError, match="handler failed"):
        async with transactions.lazy() as conn:
            await conn.execute("INSERT INTO lazy_rows VALUES (1)")
            raise RuntimeError("handler failed")
    assert await pool.fetchval("SELECT count(*) FROM lazy_rows") == 0
    with pytest.raises(RuntimeError, match="before any statement"):
        async with transactions.lazy() as conn:
            raise RuntimeError("before any statement")
    assert not begun(conn)


async def test_a_savepoint_and_a_cursor_run_inside_the_transaction(
    pool: asyncpg.Pool[Any],
) -> None:
    """``transaction()`` on a batch's connection is a savepoint of the batch's transaction (it
    never commits on its own); ``cursor()`` iterates inside it."""
    await pool.execute("CREATE TABLE lazy_rows (n int)")
    transactions = PoolTransactions(pool)
    with pytest.raises(RuntimeError, match="later"):
        async with transactions.lazy() as conn:
            async with conn.transaction():
                await conn.execute("INSERT INTO lazy_rows VALUES (1)")
            assert begun(conn)
            raise RuntimeError("later")
    assert await pool.fetchval("SELECT count(*) FROM lazy_rows") == 0

    async with transactions.lazy() as conn:
        with pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():
                await conn.execute("CREATE UNIQUE INDEX ON lazy_rows (n)")
                await conn.execute("INSERT INTO lazy_rows VALUES (2), (2)")
        await conn.execute("INSERT INTO lazy_rows VALUES (3)")
    assert await pool.fetchval("SELECT array_agg(n) FROM lazy_rows") == [3]

    async with transactions.lazy() as conn:
        rows = [row[0] async for row in conn.cursor("SELECT generate_series(1, 3)")]
        assert begun(conn)
    assert rows == [1, 2, 3]
    async with transactions.lazy() as conn:
        cursor = await conn.cursor("SELECT generate_series(1, 5)")
        assert [row[0] for row in await cursor.fetch(2)] == [1, 2]


async def test_every_statement_method_begins_it(pool: asyncpg.Pool[Any]) -> None:
    transactions = PoolTransactions(pool)
    for call in (
        lambda c: c.fetch("SELECT 1"),
        lambda c: c.fetchval("SELECT 1"),
        lambda c: c.fetchrow("SELECT 1"),
        lambda c: c.executemany("SELECT $1::int", [(1,), (2,)]),
        lambda c: c.prepare("SELECT 1"),
    ):
        async with transactions.lazy() as conn:
            await call(conn)
            assert begun(conn)
            assert plain(conn).is_in_transaction()
    async with transactions.lazy() as conn:
        assert isinstance(conn, LazyTransaction)
        assert conn.is_in_transaction()  # as handlers see it: inside the batch's transaction
        assert conn.get_server_pid() > 0  # not a statement: nothing begins
        assert not begun(conn)


async def test_a_plain_connection_counts_as_begun(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as raw:
        conn: Connection = raw
        assert begun(conn)
        assert plain(conn) is conn
