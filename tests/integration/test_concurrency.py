"""Stream-wise concurrency (``concurrency=n``) against the genuine MessageDB: handlers of many
partitions share the batch's transaction (statements on ``ctx.conn``, read-model tables,
``ctx.write``) and everything commits exactly once, with the position."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest
from structlog.testing import capture_logs

from worker import BaseEvent, Context, Domain, Increment, MessageStore, ReadModel, Runner, on
from worker.engine.lease import Lease
from worker.engine.positions import PostgresPositionStore
from worker.ops.settings import WorkerSettings

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio

CONCURRENCY = 8
CONSUMER = "paid:acct"
SETTINGS = WorkerSettings(
    batch_size=60, retry_base_delay=0.001, retry_max_delay=0.01, poll_interval_max=0.05
)


class Paid(BaseEvent):
    account: str
    n: int
    amount: int


class Noted(BaseEvent):
    """Written by the projector with ``ctx.write`` for every ``Paid``."""

    account: str
    n: int


class Balance(ReadModel):
    """One row per account, changed by that account's partition only."""

    __table__ = "conc_balances"
    __key__ = "account"
    account: str
    total: int = 0
    events: int = 0


class Overall(ReadModel):
    """One row changed by every partition."""

    __table__ = "conc_overall"
    __key__ = "id"
    id: str
    total: int = 0
    events: int = 0


@dataclass
class Probe:
    """What the handlers did: how many ran at once, and where to fail or wait (by (account, n))."""

    in_flight: int = 0
    most: int = 0
    fail: dict[tuple[str, int], Callable[[Context], Any]] = field(default_factory=dict)


def paid_domain(probe: Probe, *, journal: bool = True, max_attempts: int | None = None) -> Domain:
    """A projector at ``CONCURRENCY`` whose handler waits (a simulated I/O), then reads and
    appends to a plain ``journal`` table on ``ctx.conn`` (unless ``journal`` is false: statements
    of its own are not replay-safe), changes the ``Balance`` of its account and the one
    ``Overall`` row through ``ctx.table``, and writes a ``Noted`` to ``note-{account}``."""
    domain = Domain("test")
    domain.register_event(Paid, category="acct")
    domain.register_event(Noted, category="note")

    @domain.projector(
        name="paid",
        stream_categories=["acct"],
        read_models=[Balance, Overall],
        concurrency=CONCURRENCY,
        max_attempts=max_attempts,
    )
    class PaidProjector:
        async def setup(self, conn: Any) -> None:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS journal (seq bigserial, account text, n int,"
                " seen bigint, global_position bigint)"
            )

        @on(Paid)
        async def paid(self, event: Paid, ctx: Context) -> None:
            probe.in_flight += 1
            probe.most = max(probe.most, probe.in_flight)
            try:
                await anyio.sleep(0.001)  # a call to some service: other partitions run
                failure = probe.fail.get((event.account, event.n))
                if failure is not None:
                    await failure(ctx)
                if journal:
                    # The batch's earlier statements are visible: this partition's own inserts.
                    seen = await ctx.conn.fetchval(
                        "SELECT count(*) FROM journal WHERE account = $1", event.account
                    )
                    await ctx.conn.execute(
                        "INSERT INTO journal (account, n, seen, global_position)"
                        " VALUES ($1, $2, $3, $4)",
                        event.account,
                        event.n,
                        seen,
                        ctx.message.global_position,
                    )
                ctx.table(Balance).add(
                    event.account, total=Increment(event.amount), events=Increment(1)
                )
                overall = ctx.table(Overall)
                if await overall.get("all") is None:  # other partitions may be loading it too
                    overall.put(Overall(id="all", total=event.amount, events=1))
                else:
                    overall.update("all", total=Increment(event.amount), events=Increment(1))
                await ctx.write(f"note-{event.account}", Noted(account=event.account, n=event.n))
            finally:
                probe.in_flight -= 1

    return domain


@dataclass
class Written:
    """What was written: account -> its amounts, in order."""

    amounts: dict[str, list[int]] = field(default_factory=dict)

    def balances(self) -> dict[str, tuple[int, int]]:
        return {a: (sum(amounts), len(amounts)) for a, amounts in self.amounts.items()}

    def overall(self) -> tuple[int, int]:
        rows = self.balances().values()
        return sum(r[0] for r in rows), sum(r[1] for r in rows)


async def pay(store: MessageStore, written: Written, accounts: int, per_account: int) -> None:
    """``per_account`` payments into each account, the accounts interleaved one by one."""
    for _ in range(per_account):
        for a in range(accounts):
            account = f"a{a}"
            amounts = written.amounts.setdefault(account, [])
            amount = 1 + (a * 7 + len(amounts) * 13) % 100
            event = Paid(account=account, n=len(amounts), amount=amount)
            await store.write(f"acct-{a}", event.to_message())
            amounts.append(amount)


async def catch_up(domain: Domain, dsn: str, settings: WorkerSettings = SETTINGS) -> None:
    await Runner(domain, dsn, settings).run(until_caught_up=True, handle_signals=False)


async def assert_exact(
    pool: asyncpg.Pool[Any], store: MessageStore, written: Written, *, journal: bool = True
) -> None:
    """Every payment applied exactly once, each account's in order; the position is the head."""
    everything = {a: list(range(len(amounts))) for a, amounts in written.amounts.items()}
    if journal:
        rows = await pool.fetch("SELECT account, n, seen FROM journal ORDER BY seq")
        handled: dict[str, list[int]] = {}
        for row in rows:
            # Each handler saw exactly the rows of its account written before it.
            assert row["seen"] == row["n"], dict(row)
            handled.setdefault(row["account"], []).append(row["n"])
        assert handled == everything
    balances = await pool.fetch("SELECT account, total, events FROM conc_balances")
    assert {r["account"]: (r["total"], r["events"]) for r in balances} == written.balances()
    overall = await pool.fetchrow("SELECT total, events FROM conc_overall WHERE id = 'all'")
    assert overall is not None and (overall["total"], overall["events"]) == written.overall()
    notes = {
        account: [m.data["n"] for m in await store.read_stream(f"note-{account}")]
        for account in written.amounts
    }
    assert notes == everything
    assert await position(pool) == await store.category_head("acct")
    assert await pool.fetchval("SELECT count(*) FROM worker.dead_letters") == 0


async def position(pool: asyncpg.Pool[Any]) -> int | None:
    value: int | None = await pool.fetchval(
        "SELECT position FROM worker.positions WHERE consumer = $1", CONSUMER
    )
    return value


async def test_partitions_share_the_batch_transaction_and_commit_everything_once(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Statements on ctx.conn, read-model changes and written messages of many partitions at
    once all commit exactly once, each stream's in order, with the position at the head."""
    written, probe = Written(), Probe()
    await pay(store, written, accounts=12, per_account=15)
    await catch_up(paid_domain(probe), database_dsn)
    assert probe.most == CONCURRENCY  # partitions really were handled at once
    await assert_exact(pool, store, written)
    [first] = await store.read_stream("note-a3", 0, 1)
    cause = (await store.read_stream("acct-3", 0, 1))[0]
    assert first.metadata["causationMessageGlobalPosition"] == cause.global_position


async def in_flight_statement(dsn: str) -> None:
    """Wait until a statement of the worker's runs on its batch connection (``pg_sleep``)."""
    conn = await asyncpg.connect(dsn)
    try:
        with anyio.fail_after(10):
            while not await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                " AND query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()"
            ):
                await anyio.sleep(0.005)
    finally:
        await conn.close()


async def test_a_failed_attempt_leaves_nothing_behind(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """One partition's handler fails (once) while another partition's statement runs on the
    shared connection: the batch rolls back, is applied again around the failing message, and
    nothing of the failed attempt remains (no row nor message twice)."""
    written, probe = Written(), Probe()
    await pay(store, written, accounts=10, per_account=6)
    dsn = database_dsn
    failing = anyio.Event()
    once = {"slow": True, "fail": True}

    async def slow(ctx: Context) -> None:
        if once["slow"]:
            once["slow"] = False
            await failing.wait()
            await ctx.conn.execute("SELECT pg_sleep(5)")  # interrupted by the failure

    async def fail(ctx: Context) -> None:
        if once["fail"]:
            once["fail"] = False
            failing.set()
            await in_flight_statement(dsn)
            raise RuntimeError("cannot handle a7/3")

    probe.fail[("a2", 3)] = slow
    probe.fail[("a7", 3)] = fail
    with capture_logs() as logs:
        await catch_up(paid_domain(probe, max_attempts=3), database_dsn)
    assert once == {"slow": False, "fail": False}
    retried = [e for e in logs if e["event"] == "handler failed; retrying"]
    assert [(e["stream_name"], e["attempt"]) for e in retried] == [("acct-7", 1)]
    assert not [e for e in logs if e["event"] == "transient failure; retrying batch"]
    await assert_exact(pool, store, written)


async def lose_connection(ctx: Context) -> None:
    await ctx.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")


async def deadlock(ctx: Context) -> None:
    raise asyncpg.DeadlockDetectedError("deadlock detected")


@pytest.mark.parametrize(
    "transient", [deadlock, lose_connection], ids=["deadlock", "connection-lost"]
)
async def test_a_transient_error_in_one_partition_retries_the_batch_and_ends_exact(
    store: MessageStore,
    pool: asyncpg.Pool[Any],
    database_dsn: str,
    transient: Callable[[Context], Any],
) -> None:
    """A transient error in one partition's handler, mid-batch while the others run: the
    whole batch is retried (not the message on its own) and the result is exact."""
    written, probe = Written(), Probe()
    await pay(store, written, accounts=10, per_account=6)
    failures = {"left": 1}

    async def once(ctx: Context) -> None:
        if failures["left"]:
            failures["left"] -= 1
            await transient(ctx)

    probe.fail[("a4", 2)] = once
    with capture_logs() as logs:
        await catch_up(paid_domain(probe), database_dsn)
    assert failures["left"] == 0
    assert len([e for e in logs if e["event"] == "transient failure; retrying batch"]) == 1
    assert not [e for e in logs if e["event"] == "handler failed; retrying"]
    await assert_exact(pool, store, written)


async def reset(pool: asyncpg.Pool[Any], dsn: str, to: int) -> None:
    lease = Lease(dsn, CONSUMER)
    assert await lease.try_acquire()
    try:
        await PostgresPositionStore(pool).set(CONSUMER, to)
    finally:
        await lease.release()


async def test_after_a_reset_partitions_changing_one_row_change_it_once(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Exact mode: reset to an earlier position and replay (with new payments after the old
    head, so a batch straddles it): the row every partition changes, each account's row and
    the written messages are changed or written once, as by a clean build."""
    written, probe = Written(), Probe()
    await pay(store, written, accounts=8, per_account=10)
    domain = paid_domain(probe, journal=False)
    await catch_up(domain, database_dsn)
    await assert_exact(pool, store, written, journal=False)
    first_head = await store.category_head("acct")
    assert first_head is not None
    await pay(store, written, accounts=8, per_account=3)
    await reset(pool, database_dsn, first_head - 47)
    settings = SETTINGS.model_copy(update={"batch_size": 40})  # 2nd batch straddles first_head
    await catch_up(domain, database_dsn, settings)
    await assert_exact(pool, store, written, journal=False)
    assert probe.most == CONCURRENCY
