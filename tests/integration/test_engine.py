"""The consumer engine in-process, against the genuine MessageDB."""

from __future__ import annotations

import gc
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import orjson
import pytest
from structlog.testing import capture_logs

from worker import BaseEvent, Context, Domain, MessageStore, NewMessage, Runner, handle, on
from worker.engine.backend import PostgresBackend
from worker.engine.consumer import Consumer
from worker.engine.lease import Lease
from worker.engine.positions import PostgresPositionStore
from worker.engine.tuning import ConsumerOptions
from worker.engine.wakeups import Waker
from worker.errors import LeaseLostError
from worker.ops.settings import WorkerSettings
from worker.store.database import connect

if TYPE_CHECKING:
    from collections.abc import Callable

    import asyncpg

pytestmark = pytest.mark.anyio

FAST = WorkerSettings(
    batch_size=50, retry_base_delay=0.001, retry_max_delay=0.01, poll_interval_max=0.05
)


class Deposited(BaseEvent):
    account: str
    n: int
    amount: int


class Closed(BaseEvent):
    account: str


def ledger_domain(
    fails: Callable[[Deposited], bool] = lambda e: False,
    *,
    on_failure: str | None = None,
    max_attempts: int | None = None,
    group_size: int = 1,
    concurrency: int = 1,
) -> Domain:
    """A domain whose projector appends every deposit to `ledger` in handling order (with
    ``concurrency`` > 1, after a simulated I/O wait, so the partitions interleave)."""
    domain = Domain("test")
    domain.register_event(Deposited, category="acct")
    domain.register_event(Closed, category="acct")

    @domain.projector(
        name="ledger",
        stream_categories=["acct"],
        on_failure=on_failure,  # type: ignore[arg-type]
        max_attempts=max_attempts,
        group_size=group_size,
        concurrency=concurrency,
    )
    class Ledger:
        async def setup(self, conn: Any) -> None:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS ledger (seq bigserial, account text, n int, amount int,"
                " global_position bigint UNIQUE)"
            )

        @on(Deposited)
        async def deposited(self, event: Deposited, ctx: Context) -> None:
            if concurrency > 1:
                await anyio.sleep(0.001)
            if fails(event):
                raise RuntimeError(f"cannot handle {event.account}/{event.n}")
            await ctx.conn.execute(
                "INSERT INTO ledger (account, n, amount, global_position) VALUES ($1, $2, $3, $4)",
                event.account,
                event.n,
                event.amount,
                ctx.message.global_position,
            )

    return domain


async def deposit(store: MessageStore, accounts: int, per_account: int) -> None:
    for n in range(per_account):
        for a in range(accounts):
            await store.write(
                f"acct-{a}", Deposited(account=f"a{a}", n=n, amount=n + 1).to_message()
            )


async def ledger(pool: asyncpg.Pool[Any]) -> dict[str, list[int]]:
    rows = await pool.fetch("SELECT account, n FROM ledger ORDER BY seq")
    out: dict[str, list[int]] = {}
    for row in rows:
        out.setdefault(row["account"], []).append(row["n"])
    return out


async def catch_up(domain: Domain, dsn: str, settings: WorkerSettings = FAST) -> Runner:
    runner = Runner(domain, dsn, settings)
    await runner.run(until_caught_up=True, handle_signals=False)
    return runner


async def position(pool: asyncpg.Pool[Any], consumer: str) -> int | None:
    value: int | None = await pool.fetchval(
        "SELECT position FROM worker.positions WHERE consumer = $1", consumer
    )
    return value


async def test_projects_every_event_in_stream_order_and_records_the_head(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Every deposit lands once, in stream order; the position is the category head."""
    await deposit(store, accounts=7, per_account=20)
    await catch_up(ledger_domain(), database_dsn)
    assert await ledger(pool) == {f"a{a}": list(range(20)) for a in range(7)}
    assert await position(pool, "ledger:acct") == await store.category_head("acct")


async def test_unknown_types_are_skipped_and_the_position_advances(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    await store.write("acct-1", NewMessage("SomethingElse", {"x": 1}))
    await store.write("acct-1", Deposited(account="a1", n=0, amount=1).to_message())
    await store.write("acct-1", NewMessage("AnotherUnknown", {}))
    await catch_up(ledger_domain(), database_dsn)
    assert await ledger(pool) == {"a1": [0]}
    assert await position(pool, "ledger:acct") == await store.category_head("acct")
    assert await pool.fetchval("SELECT count(*) FROM worker.dead_letters") == 0


async def test_a_rerun_applies_nothing_twice(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    await deposit(store, accounts=3, per_account=5)
    await catch_up(ledger_domain(), database_dsn)
    await deposit(store, accounts=1, per_account=1)
    await catch_up(ledger_domain(), database_dsn)
    assert await pool.fetchval("SELECT count(*) FROM ledger") == 16


@pytest.mark.parametrize("concurrency", [1, 4], ids=["sequential", "concurrent"])
async def test_poison_message_is_parked_with_its_stream_behind_it_then_replayed(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str, concurrency: int
) -> None:
    """After max_attempts the message parks; its stream's later messages park behind it;
    other streams are fully projected; replay after the fix completes the stream in order.
    The same with the streams handled concurrently (the poison fails while others run)."""
    await deposit(store, accounts=4, per_account=6)
    poison = ledger_domain(
        lambda e: e.account == "a2" and e.n == 3, max_attempts=3, concurrency=concurrency
    )
    with capture_logs() as logs:
        await catch_up(poison, database_dsn)
    projected = await ledger(pool)
    assert projected["a2"] == [0, 1, 2]
    assert all(projected[f"a{a}"] == list(range(6)) for a in (0, 1, 3))
    assert await position(pool, "ledger:acct") == await store.category_head("acct")

    parked = await pool.fetch(
        "SELECT position, attempts, error, error_type, traceback, blocked_by, id"
        " FROM worker.dead_letters ORDER BY global_position"
    )
    assert [r["position"] for r in parked] == [3, 4, 5]
    head = parked[0]
    assert head["attempts"] == 3 and head["error_type"] == "RuntimeError"
    assert "cannot handle a2/3" in head["error"] and "Traceback" in head["traceback"]
    assert [r["blocked_by"] for r in parked[1:]] == [head["id"], head["id"]]
    assert [e["attempt"] for e in logs if e["event"] == "handler failed; retrying"] == [1, 2]

    await deposit_one(store, "acct-2", "a2", 6)  # arrives while the stream is parked
    await catch_up(poison, database_dsn)
    assert (await ledger(pool))["a2"] == [0, 1, 2]

    fixed = ledger_domain(concurrency=concurrency)
    consumer = Consumer(
        fixed.subscribers[0],
        "acct",
        PostgresBackend(database_dsn, pool, store),
        waker=Waker(),
        options=ConsumerOptions(),
    )
    assert await consumer.lease.try_acquire()
    try:
        assert await consumer.replay("acct-2") == 4
    finally:
        await consumer.lease.release()
    assert (await ledger(pool))["a2"] == [0, 1, 2, 3, 4, 5, 6]
    assert await pool.fetchval("SELECT count(*) FROM worker.dead_letters") == 0


async def test_a_batch_its_commit_refuses_is_isolated_and_the_culprit_parked(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A deferred constraint breaks only at COMMIT: the batch is applied again one message at
    a time, the message whose writes break it is retried and parked, the others land once."""
    domain = Domain("test")
    domain.register_event(Deposited, category="acct")

    @domain.projector(name="receipts", stream_categories=["acct"], max_attempts=2)
    class Receipts:
        async def setup(self, conn: Any) -> None:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS receipts (amount int"
                " UNIQUE DEFERRABLE INITIALLY DEFERRED, account text)"
            )

        @on(Deposited)
        async def deposited(self, event: Deposited, ctx: Context) -> None:
            await ctx.conn.execute(
                "INSERT INTO receipts (amount, account) VALUES ($1, $2)",
                event.amount,
                event.account,
            )

    for account, amount in (("a1", 10), ("a2", 20), ("a3", 10), ("a4", 30)):
        await store.write(
            f"acct-{account}", Deposited(account=account, n=0, amount=amount).to_message()
        )
    with capture_logs() as logs:
        await catch_up(domain, database_dsn)
    rows = await pool.fetch("SELECT account, amount FROM receipts ORDER BY amount")
    assert [(r["account"], r["amount"]) for r in rows] == [("a1", 10), ("a2", 20), ("a4", 30)]
    parked = await pool.fetch("SELECT stream_name, attempts, error_type FROM worker.dead_letters")
    assert [(r["stream_name"], r["attempts"], r["error_type"]) for r in parked] == [
        ("acct-a3", 2, "UniqueViolationError")
    ]
    assert await position(pool, "receipts:acct") == await store.category_head("acct")
    assert any(e["event"] == "message parked" for e in logs)


def replayer(domain: Domain, pool: asyncpg.Pool[Any], store: MessageStore, dsn: str) -> Consumer:
    """The ledger consumer of ``domain``, as `dlq replay` builds it to replay inline."""
    return Consumer(
        domain.subscribers[0],
        "acct",
        PostgresBackend(dsn, pool, store),
        waker=Waker(),
        options=ConsumerOptions(),
    )


@pytest.mark.parametrize("handler", ["fixed", "still failing"])
async def test_a_replay_under_a_superseded_lease_epoch_changes_nothing(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str, handler: str
) -> None:
    """Another owner bumped the consumer's epoch after this process took its lease: a replay
    raises LeaseLostError, whether the message now succeeds or fails again, and the dead
    letters and the read model stay exactly as they were."""
    await deposit(store, accounts=2, per_account=3)
    poison = ledger_domain(lambda e: e.account == "a1" and e.n == 1, max_attempts=1)
    await catch_up(poison, database_dsn)
    projected = await ledger(pool)
    parked = [dict(r) for r in await pool.fetch("SELECT * FROM worker.dead_letters ORDER BY id")]
    assert [r["position"] for r in parked] == [1, 2]

    consumer = replayer(
        ledger_domain() if handler == "fixed" else poison, pool, store, database_dsn
    )
    assert await consumer.lease.try_acquire()
    try:
        await pool.execute(
            "UPDATE worker.leases SET epoch = epoch + 1 WHERE consumer = $1", consumer.name
        )
        with pytest.raises(LeaseLostError):
            await consumer.replay("acct-1")
    finally:
        await consumer.lease.release()
    assert await ledger(pool) == projected
    assert [
        dict(r) for r in await pool.fetch("SELECT * FROM worker.dead_letters ORDER BY id")
    ] == parked


async def deposit_one(store: MessageStore, stream: str, account: str, n: int) -> None:
    await store.write(stream, Deposited(account=account, n=n, amount=1).to_message())


async def test_a_handler_that_recovers_is_applied_once(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Failing twice then succeeding: no dead letter, the event applied exactly once."""
    await deposit(store, accounts=2, per_account=3)
    failures = {"left": 2}

    def flaky(event: Deposited) -> bool:
        if event.account == "a1" and event.n == 1 and failures["left"]:
            failures["left"] -= 1
            return True
        return False

    await catch_up(ledger_domain(flaky, max_attempts=5), database_dsn)
    assert await ledger(pool) == {"a0": [0, 1, 2], "a1": [0, 1, 2]}
    assert await pool.fetchval("SELECT count(*) FROM worker.dead_letters") == 0


async def test_stop_action_halts_only_that_consumer(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """With on_failure='stop' the consumer halts with a clear log line; others continue."""
    domain = ledger_domain(lambda e: e.account == "a1" and e.n == 2, on_failure="stop")
    seen: list[int] = []

    @domain.event_handler(name="watcher", stream_categories=["acct"])
    class Watcher:
        @handle(Deposited)
        def deposited(self, event: Deposited, ctx: Context) -> None:
            seen.append(ctx.message.global_position)

    await deposit(store, accounts=2, per_account=4)
    with capture_logs() as logs:
        runner = await catch_up(domain, database_dsn)
    assert runner.result.stopped == ["ledger:acct"]
    stops = [e for e in logs if e["event"].startswith("consumer stopped")]
    assert len(stops) == 1 and stops[0]["log_level"] == "error"
    assert stops[0]["stream_name"] == "acct-1" and stops[0]["position"] == 2
    assert len(seen) == 8
    stopped_at = await position(pool, "ledger:acct")
    assert stopped_at is not None and stopped_at < await store.category_head("acct")
    assert await pool.fetchval("SELECT count(*) FROM worker.dead_letters") == 0


async def test_malformed_data_is_parked_at_once(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Data that does not validate is a permanent error: parked after one attempt."""
    await store.write("acct-1", NewMessage("Deposited", {"account": "a1", "n": "zero"}))
    await deposit_one(store, "acct-1", "a1", 1)
    await deposit_one(store, "acct-2", "a2", 0)
    await catch_up(ledger_domain(max_attempts=5), database_dsn)
    assert await ledger(pool) == {"a2": [0]}
    rows = await pool.fetch(
        "SELECT attempts, error_type, error FROM worker.dead_letters ORDER BY global_position"
    )
    assert rows[0]["attempts"] == 1 and rows[0]["error_type"] == "MalformedMessageError"
    assert "n: Input should be a valid integer" in rows[0]["error"]
    assert "amount: Field required" in rows[0]["error"]
    assert rows[1]["attempts"] == 0


async def test_handler_writes_are_exactly_once_with_follow_metadata(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """ctx.write emits in the batch's transaction, with causation/correlation metadata."""
    domain = ledger_domain()

    @domain.event_handler(name="closer", stream_categories=["acct"])
    class Closer:
        @handle(Deposited)
        async def deposited(self, event: Deposited, ctx: Context) -> None:
            if event.n == 1:
                await ctx.write(f"audit-{event.account}", Closed(account=event.account))

    await store.write(
        "acct-9",
        NewMessage(
            "Deposited", {"account": "a9", "n": 0, "amount": 1}, {"correlationStreamName": "web-42"}
        ),
    )
    cause = await store.write(
        "acct-9",
        NewMessage(
            "Deposited", {"account": "a9", "n": 1, "amount": 1}, {"correlationStreamName": "web-42"}
        ),
    )
    await catch_up(domain, database_dsn)
    # A redelivery (position lost) derives the same message id: the store refuses a second copy.
    await pool.execute("DELETE FROM worker.positions WHERE consumer = 'closer:acct'")
    await catch_up(domain, database_dsn, FAST.model_copy(update={"max_attempts": 1}))
    assert await pool.fetchval("SELECT error_type FROM worker.dead_letters") == (
        "UniqueViolationError"
    )
    [emitted] = await store.read_stream("audit-a9")
    assert emitted.type == "Closed" and emitted.data == {"account": "a9"}
    assert emitted.metadata == {
        "causationMessageStreamName": "acct-9",
        "causationMessagePosition": cause,
        "causationMessageGlobalPosition": (await store.read_stream("acct-9"))[1].global_position,
        "correlationStreamName": "web-42",
    }


@pytest.mark.parametrize("metadata", ["[1, 2]", '"x"', "3"], ids=["array", "string", "number"])
async def test_metadata_that_is_no_json_object_is_followed_as_absent(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str, metadata: str
) -> None:
    """A foreign writer left metadata that is valid JSON but no object: a handler that emits
    still succeeds, its messages carry causation metadata only, and one warning says so."""
    domain = ledger_domain()

    @domain.event_handler(name="auditor", stream_categories=["acct"])
    class Auditor:
        @handle(Deposited)
        async def deposited(self, event: Deposited, ctx: Context) -> None:
            for _ in range(2):
                await ctx.write(f"audit-{event.account}", Closed(account=event.account))

    await pool.execute(
        "SELECT message_store.write_message($1, $2, $3, $4::text::jsonb, $5::text::jsonb)",
        str(uuid.uuid4()),
        "acct-7",
        "Deposited",
        '{"account": "a7", "n": 0, "amount": 5}',
        metadata,
    )
    with capture_logs() as logs:
        await catch_up(domain, database_dsn)
    [cause] = await store.read_stream("acct-7")
    follows = {
        "causationMessageStreamName": "acct-7",
        "causationMessagePosition": 0,
        "causationMessageGlobalPosition": cause.global_position,
    }
    assert [(m.type, m.metadata) for m in await store.read_stream("audit-a7")] == [
        ("Closed", follows),
        ("Closed", follows),
    ]
    assert await pool.fetchval("SELECT count(*) FROM worker.dead_letters") == 0
    warned = [e for e in logs if e["event"].startswith("metadata is not a JSON object")]
    assert len(warned) == 1, warned
    assert warned[0]["log_level"] == "warning" and warned[0]["stream_name"] == "acct-7"
    assert orjson.loads(warned[0]["metadata"]) == orjson.loads(metadata)


async def test_a_zombie_with_a_stale_epoch_cannot_commit(
    pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Once another process took the lease, the old epoch's commit fails and rolls back."""
    positions = PostgresPositionStore(pool)
    first = Lease(database_dsn, "c:x")
    assert await first.try_acquire()
    async with pool.acquire() as conn, conn.transaction():
        await positions.commit(conn, "c:x", 10, first.epoch, expected=0)
    await first.release()
    second = Lease(database_dsn, "c:x")
    assert await second.try_acquire()
    try:
        with pytest.raises(LeaseLostError):
            async with pool.acquire() as conn, conn.transaction():
                await positions.commit(conn, "c:x", 99, first.epoch, expected=10)
        assert await positions.load("c:x") == 10
        third = Lease(database_dsn, "c:x")
        assert not await third.try_acquire()
    finally:
        await second.release()


async def first_deposit_projected_within(
    runner: Runner, store: MessageStore, pool: asyncpg.Pool[Any], seconds: float
) -> float:
    """Run ``runner`` until its consumer is idle, write one deposit and wait for it to be
    projected (failing after ``seconds``); how long it took."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        with anyio.fail_after(10):
            while not runner.result.consumers or runner.result.consumers[0].state != "caught_up":
                await anyio.sleep(0.01)
        await deposit_one(store, "acct-1", "a1", 0)
        written = anyio.current_time()
        with anyio.fail_after(seconds):
            while await pool.fetchval("SELECT count(*) FROM ledger") != 1:
                await anyio.sleep(0.01)
        took = anyio.current_time() - written
        runner.request_stop()
    return took


async def test_notify_wakes_an_idle_consumer_long_before_its_next_poll(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """With a 5 s poll interval, a new message is projected within 1.5 s: only the NOTIFY
    trigger and the LISTEN connection can have woken the idle consumer."""
    settings = FAST.model_copy(
        update={"notify": True, "poll_interval_min": 5.0, "poll_interval_max": 5.0}
    )
    runner = Runner(ledger_domain(), database_dsn, settings)
    assert await first_deposit_projected_within(runner, store, pool, 1.5) < 1.5


async def test_polling_alone_delivers_new_messages(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """With no trigger and no LISTEN connection, an idle consumer still finds a new message at
    its next poll (every 0.2 s here), well within 2 s."""
    from worker.store.schema import set_notify_trigger

    async with pool.acquire() as conn:
        await set_notify_trigger(conn, False)
    settings = FAST.model_copy(
        update={"notify": False, "poll_interval_min": 0.2, "poll_interval_max": 0.2}
    )
    runner = Runner(ledger_domain(), database_dsn, settings)
    assert await first_deposit_projected_within(runner, store, pool, 2.0) < 2.0


async def test_handler_logs_name_the_message_being_handled(
    store: MessageStore, database_dsn: str
) -> None:
    """A plain structlog call in a handler carries consumer, stream, positions and type."""
    import structlog
    from structlog.testing import LogCapture

    from worker.engine.context import add_message_context

    domain = ledger_domain()

    @domain.event_handler(name="talker", stream_categories=["acct"])
    class Talker:
        @handle(Deposited)
        def deposited(self, event: Deposited, ctx: Context) -> None:
            structlog.get_logger("app").info("deposit seen", amount=event.amount)

    await deposit(store, accounts=2, per_account=2)
    capture = LogCapture()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, add_message_context, capture]
    )
    try:
        await catch_up(domain, database_dsn)
    finally:
        structlog.reset_defaults()
    seen = [e for e in capture.entries if e["event"] == "deposit seen"]
    assert len(seen) == 4
    messages = await store.read_category("acct")
    assert [
        (e["consumer"], e["stream_name"], e["position"], e["global_position"], e["type"])
        for e in seen
    ] == [("talker:acct", m.stream_name, m.position, m.global_position, m.type) for m in messages]
    outside = [e for e in capture.entries if e["event"] == "consumer started"]
    assert outside and all("stream_name" not in e for e in outside)


async def test_a_consumer_group_splits_the_category_between_its_members(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Each member reads only its streams; together they project everything, in stream order."""
    await deposit(store, accounts=12, per_account=5)
    runner = await catch_up(ledger_domain(group_size=3), database_dsn)
    assert await ledger(pool) == {f"a{a}": list(range(5)) for a in range(12)}
    consumers = runner.result.consumers
    assert [c.name for c in consumers] == [f"ledger:acct@{m}/3" for m in range(3)]
    handled = [
        await pool.fetchval(
            "SELECT count(*) FROM ledger WHERE global_position IN "
            "(SELECT global_position FROM message_store.messages "
            "WHERE MOD(@message_store.hash_64(message_store.cardinal_id(stream_name)), 3) = $1)",
            m,
        )
        for m in range(3)
    ]
    assert sum(handled) == 60 and all(h > 0 for h in handled)
    for consumer in consumers:
        assert await position(pool, consumer.name) is not None


async def test_replicas_share_a_group_one_slot_each(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Two workers capped at one slot each: each holds one member; the work is complete."""
    await deposit(store, accounts=10, per_account=4)
    one_slot = FAST.model_copy(update={"max_group_slots": 1})

    def holding(runner: Runner) -> int:
        return sum(c.lease.held for c in runner.result.consumers)

    runners = [Runner(ledger_domain(group_size=2), database_dsn, one_slot) for _ in range(2)]
    async with anyio.create_task_group() as tg:
        for runner in runners:
            tg.start_soon(lambda r=runner: r.run(handle_signals=False))
        with anyio.fail_after(20):
            while await pool.fetchval("SELECT to_regclass('ledger')") is None:
                await anyio.sleep(0.02)
            while await pool.fetchval("SELECT count(*) FROM ledger") != 40:
                await anyio.sleep(0.02)
            while not all(holding(r) == 1 for r in runners):  # both have settled on a slot
                await anyio.sleep(0.02)
        held = [[c.name for c in r.result.consumers if c.lease.held] for r in runners]
        for runner in runners:
            runner.request_stop()
    assert sorted(name for names in held for name in names) == [
        "ledger:acct@0/2",
        "ledger:acct@1/2",
    ]
    assert all(len(names) == 1 for names in held)
    assert await ledger(pool) == {f"a{a}": list(range(4)) for a in range(10)}


async def test_a_slot_its_cap_keeps_waiting_holds_no_connection(
    store: MessageStore, database_dsn: str
) -> None:
    """One worker capped at one slot of a group of 2: while one member runs, the other waits
    for the cap without a lease connection (lease connections open ahead only for slots that
    may take their lease at once)."""
    await deposit(store, accounts=4, per_account=2)
    runner = Runner(
        ledger_domain(group_size=2), database_dsn, FAST.model_copy(update={"max_group_slots": 1})
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        with anyio.fail_after(20):
            while not any(c.state == "caught_up" for c in runner.result.consumers):
                await anyio.sleep(0.02)
        (waiting,) = [c for c in runner.result.consumers if c.state != "caught_up"]
        assert waiting.state == "waiting" and not waiting.lease.held
        assert waiting.lease._conn is None, "the capped slot opened a lease connection"
        runner.request_stop()


async def test_a_batch_committed_once_cannot_commit_again(
    pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """The position only moves from where the batch started: a retry of a batch whose commit
    went through (the client saw an error after COMMIT) fails and rolls its writes back."""
    from worker.errors import PositionMovedError

    positions = PostgresPositionStore(pool)
    lease = Lease(database_dsn, "c:y")
    assert await lease.try_acquire()
    try:
        await pool.execute("CREATE TABLE applied (n int)")
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO applied VALUES (1)")
            await positions.commit(conn, "c:y", 50, lease.epoch, expected=0)
        with pytest.raises(PositionMovedError):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO applied VALUES (1)")
                await positions.commit(conn, "c:y", 50, lease.epoch, expected=0)
        assert await pool.fetchval("SELECT count(*) FROM applied") == 1
        assert await positions.load("c:y") == 50
    finally:
        await lease.release()


async def test_a_commit_after_a_reset_never_lowers_the_high_water_mark(
    pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Commit 100, reset to 10, commit 20: the position is 20 and the high-water mark stays
    100, so batches up to 100 are still known to be applied again (exact mode)."""
    positions = PostgresPositionStore(pool)
    lease = Lease(database_dsn, "c:hw")
    assert await lease.try_acquire()
    try:
        async with pool.acquire() as conn, conn.transaction():
            await positions.commit(conn, "c:hw", 100, lease.epoch, expected=0)
        await positions.set("c:hw", 10)
        assert (await positions.load("c:hw"), await positions.high_water("c:hw")) == (10, 100)
        async with pool.acquire() as conn, conn.transaction():
            await positions.commit(conn, "c:hw", 20, lease.epoch, expected=10)
        assert (await positions.load("c:hw"), await positions.high_water("c:hw")) == (20, 100)
    finally:
        await lease.release()


# A deferred constraint trigger: inserting a ledger row of a listed account fails at COMMIT,
# after every statement of the batch (handlers' writes and the position) has run. It fails
# as a serialization failure would (so the batch is retried), counting each rejection in a
# sequence, which no rollback undoes.
REJECT_AT_COMMIT = """
CREATE TABLE reject_accounts (account text PRIMARY KEY);
CREATE SEQUENCE rejected_commits;
CREATE FUNCTION reject_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM reject_accounts WHERE account = NEW.account) THEN
        PERFORM nextval('rejected_commits');
        RAISE EXCEPTION 'commit rejected: account %', NEW.account
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER reject_at_commit AFTER INSERT ON ledger
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION reject_at_commit();
"""


async def test_a_batch_rejected_at_commit_moves_neither_position_nor_read_model(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A batch whose handlers wrote their rows fails at COMMIT: while it keeps failing, the
    position and the read model are both where they were (the position commits in the
    batch's own transaction); once the commit can succeed, the batch is applied once."""
    await deposit(store, accounts=2, per_account=3)
    await catch_up(ledger_domain(), database_dsn)
    before, at = await ledger(pool), await position(pool, "ledger:acct")
    await pool.execute(REJECT_AT_COMMIT)
    await pool.execute("INSERT INTO reject_accounts VALUES ('a9')")
    await deposit_one(store, "acct-0", "a0", 3)
    await deposit_one(store, "acct-9", "a9", 0)

    async def rejections() -> int:
        row = await pool.fetchrow("SELECT last_value, is_called FROM rejected_commits")
        return int(row["last_value"]) if row["is_called"] else 0

    async with anyio.create_task_group() as tg:
        tg.start_soon(catch_up, ledger_domain(), database_dsn)
        with anyio.fail_after(10):
            while not await rejections():
                await anyio.sleep(0.01)
        assert await position(pool, "ledger:acct") == at
        assert await ledger(pool) == before
        await pool.execute("DELETE FROM reject_accounts")
    assert await ledger(pool) == {"a0": [0, 1, 2, 3], "a1": [0, 1, 2], "a9": [0]}
    assert await position(pool, "ledger:acct") == await store.category_head("acct")


@pytest.mark.parametrize("threshold", [12_345, 0])
async def test_the_worker_sets_its_garbage_collector_from_the_settings(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str, threshold: int
) -> None:
    """``[worker] gc_threshold``: the young generation's threshold while the worker runs (0:
    the collector as the process had it)."""
    await deposit(store, accounts=1, per_account=3)
    before = gc.get_threshold()
    gc.set_threshold(700, *before[1:])
    try:
        await catch_up(
            ledger_domain(), database_dsn, FAST.model_copy(update={"gc_threshold": threshold})
        )
        assert gc.get_threshold() == (threshold or 700, *before[1:])
    finally:
        gc.set_threshold(*before)
    assert await ledger(pool) == {"a0": [0, 1, 2]}


async def test_a_run_closes_every_connection_it_opened(
    store: MessageStore, database_dsn: str
) -> None:
    """The pool's connections and each consumer's lease connection (opened ahead, while the
    schema is checked) are closed when a run ends, a halted consumer's included."""
    domain = ledger_domain(
        lambda e: e.account == "a1" and e.n == 2, on_failure="stop", group_size=2
    )
    await deposit(store, accounts=4, per_account=5)
    monitor = await connect(database_dsn)
    others = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> $1"
    try:
        before = {row["pid"] for row in await monitor.fetch(others, monitor.get_server_pid())}
        runner = await catch_up(domain, database_dsn)
        assert len(runner.result.stopped) == 1  # the member that met a1's third deposit
        left: set[int] = set()
        for _ in range(50):  # a backend leaves the activity view as its process exits
            now = {row["pid"] for row in await monitor.fetch(others, monitor.get_server_pid())}
            left = now - before
            if not left:
                break
            await anyio.sleep(0.1)
        assert not left, f"{len(left)} connection(s) of the run still open"
    finally:
        await monitor.close()
