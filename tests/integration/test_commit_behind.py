"""A projector's batches commit behind the next batch's handlers (against the genuine MessageDB):
the next batch is handled while the one before is still being written, writes nothing before
that one commits, and, should that commit fail, both are applied again with every event
counted once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import anyio
import pytest
from structlog.testing import capture_logs

from worker import (
    BaseEvent,
    Context,
    Domain,
    Increment,
    MessageStore,
    NewMessage,
    ReadModel,
    Runner,
    on,
)
from worker.ops.settings import WorkerSettings
from worker.read.model import physical

if TYPE_CHECKING:
    import asyncpg

pytestmark = pytest.mark.anyio

BATCH = 10
PLAYERS = 5
CONSUMER = "scores:score"
SETTINGS = WorkerSettings(
    batch_size=BATCH,
    max_attempts=1,
    retry_base_delay=0.001,
    retry_max_delay=0.01,
    poll_interval_max=0.05,
)


class Scored(BaseEvent):
    player: str
    n: int
    points: int


class Score(ReadModel):
    __table__ = "behind_scores"
    __key__ = "player"

    player: str
    points: int = 0
    events: int = 0


TABLE = physical(Score, 1)


def scoring_domain(
    seen: list[int],
    reached: dict[int, anyio.Event] | None = None,
    *,
    reading: bool = False,
    on_failure: Literal["park", "stop"] = "park",
    reads: list[tuple[int, int]] | None = None,
) -> Domain:
    """A projector that adds each event's points to its player's row (``seen``: the events it
    was handed, in order; ``reached[n]`` is set when event ``n`` is handed to it). ``reading``:
    it reads the row first, and reports any failure to read it as a ``LookupError`` of its own
    (as handlers that wrap what they call do); ``reads`` gets (event, the row's ``events`` as
    it read them)."""
    domain = Domain("test")
    domain.register_event(Scored, category="score")

    @domain.projector(
        name="scores", stream_categories=["score"], read_models=[Score], on_failure=on_failure
    )
    class Scores:
        @on(Scored)
        async def scored(self, event: Scored, ctx: Context) -> None:
            seen.append(event.n)
            if reached is not None and event.n in reached:
                reached[event.n].set()
            scores = ctx.table(Score)
            if reading:
                try:
                    row = await scores.get(event.player)
                except Exception as error:
                    raise LookupError(f"no score for {event.player}") from error
                if reads is not None:
                    reads.append((event.n, 0 if row is None else row.events))
            scores.add(event.player, points=Increment(event.points), events=Increment(1))

    return domain


def player(n: int) -> str:
    return f"p{n % PLAYERS}"


async def write(store: MessageStore, numbers: range, points: dict[int, int] | None = None) -> None:
    for n in numbers:
        value = (points or {}).get(n, n)
        event = Scored(player=player(n), n=n, points=value)
        await store.write(f"score-{player(n)}", event.to_message())


async def run(domain: Domain, dsn: str) -> None:
    await Runner(domain, dsn, SETTINGS).run(until_caught_up=True, handle_signals=False)


async def scores(pool: asyncpg.Pool[Any]) -> dict[str, tuple[int, int]]:
    rows = await pool.fetch(f"SELECT player, points, events FROM {TABLE}")
    return {r["player"]: (r["points"], r["events"]) for r in rows}


def expected(numbers: list[int]) -> dict[str, tuple[int, int]]:
    totals: dict[str, tuple[int, int]] = {}
    for n in numbers:
        points, events = totals.get(player(n), (0, 0))
        totals[player(n)] = (points + n, events + 1)
    return totals


async def position(pool: asyncpg.Pool[Any]) -> int:
    value: int = await pool.fetchval(
        "SELECT position FROM worker.positions WHERE consumer = $1", CONSUMER
    )
    return value


async def test_the_next_batch_is_handled_while_the_one_before_commits(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Batch 2's changes are held up by a row lock; batch 3's handlers run meanwhile, and
    nothing of batch 3 is committed before batch 2 is."""
    seen: list[int] = []
    await write(store, range(BATCH))
    await run(scoring_domain(seen), database_dsn)  # every player's row exists now
    assert await position(pool) == BATCH

    await write(store, range(BATCH, 4 * BATCH))
    reached = {2 * BATCH: anyio.Event()}  # the first event of batch 3
    locker = await pool.acquire()
    try:
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute(f"SELECT * FROM {TABLE} WHERE player = 'p0' FOR UPDATE")
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, scoring_domain(seen, reached), database_dsn)
            with anyio.fail_after(10):
                await reached[2 * BATCH].wait()
            # Batch 2 (which changes p0) cannot commit while the lock is held.
            assert await position(pool) == BATCH
            await anyio.sleep(0.2)
            assert await position(pool) == BATCH  # nor batch 3: it waits for batch 2
            await transaction.rollback()
    finally:
        await pool.release(locker)

    assert await position(pool) == 4 * BATCH
    assert await scores(pool) == expected(list(range(4 * BATCH)))
    assert seen == list(range(4 * BATCH))  # nothing handled twice: nothing failed


async def test_a_read_in_the_next_batch_sees_the_batch_before_committed(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Batch 2 is held up by a row lock while batch 3's handlers read their rows: each read
    waits for batch 2's commit and sees every earlier event of its player."""
    seen: list[int] = []
    await write(store, range(BATCH))
    await run(scoring_domain(seen), database_dsn)
    await write(store, range(BATCH, 3 * BATCH))
    reached = {2 * BATCH: anyio.Event()}
    reads: list[tuple[int, int]] = []
    locker = await pool.acquire()
    try:
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute(f"SELECT * FROM {TABLE} WHERE player = 'p0' FOR UPDATE")
        domain = scoring_domain(seen, reached, reading=True, reads=reads)
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, domain, database_dsn)
            with anyio.fail_after(10):
                await reached[2 * BATCH].wait()
            await anyio.sleep(0.2)
            await transaction.rollback()
    finally:
        await pool.release(locker)

    assert [n for n, _ in reads] == list(range(BATCH, 3 * BATCH))
    for n, events in reads:
        assert events == sum(1 for m in range(n) if player(m) == player(n)), n
    assert await scores(pool) == expected(list(range(3 * BATCH)))


async def test_a_failed_commit_behind_applies_both_batches_again_exactly_once(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Batch 2 breaks a CHECK constraint when it is written, after batch 3's handlers ran:
    batch 2 is applied again one message at a time (the culprit parked, its stream's later
    events parked behind it), then batch 3 again; every other event counts once."""
    seen: list[int] = []
    await write(store, range(BATCH))
    await run(scoring_domain(seen), database_dsn)
    await pool.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT small CHECK (points < 1000)")

    bad = BATCH + 3  # of player p3, in batch 2
    await write(store, range(BATCH, 4 * BATCH), points={bad: 5000})
    seen.clear()
    await run(scoring_domain(seen), database_dsn)

    parked = [n for n in range(bad, 4 * BATCH) if player(n) == player(bad)]
    applied = [n for n in range(4 * BATCH) if n not in parked]
    assert await scores(pool) == expected(applied)
    rows = await pool.fetch(
        "SELECT global_position, error_type FROM worker.dead_letters ORDER BY global_position"
    )
    assert [r["global_position"] for r in rows] == [n + 1 for n in parked]
    assert rows[0]["error_type"] == "CheckViolationError"
    assert await position(pool) == 4 * BATCH
    # Batch 3 had been handled before batch 2's failure was known: it was handled again.
    third = range(2 * BATCH, 3 * BATCH)
    assert all(seen.count(n) == 2 for n in third if n not in parked)


async def test_a_handler_wrapping_the_earlier_failure_does_not_get_its_message_parked(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Batch 3's handlers read their rows, so their first read waits for batch 2, whose commit
    fails; the handler turns that into an error of its own. Batch 3 is applied again after
    batch 2 (its messages are not blamed and parked): only batch 2's culprit and its stream's
    later events are parked."""
    seen: list[int] = []
    await write(store, range(BATCH))
    await run(scoring_domain(seen), database_dsn)
    await pool.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT small CHECK (points < 1000)")

    bad = BATCH + 3
    await write(store, range(BATCH, 4 * BATCH), points={bad: 5000})
    await run(scoring_domain(seen, reading=True), database_dsn)

    parked = [n for n in range(bad, 4 * BATCH) if player(n) == player(bad)]
    assert await scores(pool) == expected([n for n in range(4 * BATCH) if n not in parked])
    rows = await pool.fetch(
        "SELECT global_position, error_type FROM worker.dead_letters ORDER BY global_position"
    )
    assert [r["global_position"] for r in rows] == [n + 1 for n in parked]
    assert [r["error_type"] for r in rows][:1] == ["CheckViolationError"]


async def test_a_transient_failure_behind_retries_both_batches_and_ends_exact(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """The first write of batch 2 fails with a serialization failure (a trigger, once): both
    batches are applied again, the warning says so, and nothing counts twice or is parked."""
    seen: list[int] = []
    await write(store, range(BATCH))
    await run(scoring_domain(seen), database_dsn)
    await pool.execute(
        f"""
        CREATE SEQUENCE once;
        CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF nextval('once') = 1 THEN
            RAISE EXCEPTION 'could not serialize' USING ERRCODE = 'serialization_failure';
          END IF;
          RETURN NULL;
        END $$;
        CREATE TRIGGER fail_once AFTER INSERT OR UPDATE ON {TABLE}
          FOR EACH STATEMENT EXECUTE FUNCTION fail_once();
        """
    )

    await write(store, range(BATCH, 4 * BATCH))
    with capture_logs() as logs:
        await run(scoring_domain(seen), database_dsn)

    assert await scores(pool) == expected(list(range(4 * BATCH)))
    assert await pool.fetchval("SELECT count(*) FROM worker.dead_letters") == 0
    assert await position(pool) == 4 * BATCH
    again = [e for e in logs if e["event"] == "batch committing behind failed; applying it again"]
    assert len(again) == 1
    assert again[0]["position"] == 2 * BATCH and "could not serialize" in again[0]["error"]


async def test_a_consumer_that_stops_first_commits_the_batch_behind_it(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """The first message of batch 3 is malformed and the failure action is 'stop': batch 2,
    committing behind, is committed before the consumer halts at that message."""
    seen: list[int] = []
    await write(store, range(BATCH))
    await run(scoring_domain(seen), database_dsn)
    await write(store, range(BATCH, 2 * BATCH))
    await store.write("score-p0", NewMessage("Scored", {"player": "p0", "n": "not a number"}))
    await write(store, range(2 * BATCH + 1, 3 * BATCH))

    with capture_logs() as logs:
        await run(scoring_domain(seen, on_failure="stop"), database_dsn)

    assert any(e["event"].startswith("consumer stopped") for e in logs)
    assert await position(pool) == 2 * BATCH
    assert await scores(pool) == expected(list(range(2 * BATCH)))
