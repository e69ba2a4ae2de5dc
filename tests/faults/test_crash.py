"""Crash safety: ``kill -9`` at random instants never loses an event nor applies one twice."""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.faults._support import (
    Ledger,
    assert_consistent,
    assert_exact,
    assert_receipts_consistent,
    assert_receipts_exact,
    head,
    open_batches,
    position,
    tails,
    wait_until,
    write_deposits,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import asyncpg

    from tests.faults._support import WorkerProcess, Workers

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ACCOUNTS = 250
PER_ACCOUNT = 80  # 20,000 events
KILLS = 25


def fault_rng() -> random.Random:
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 2**32))
    print(f"fault seed: {seed} (set FAULT_SEED={seed} to repeat)")
    return random.Random(seed)


async def kill_at_random_moments(
    monitor: asyncpg.Connection[Any],
    workers: Workers,
    rng: random.Random,
    kills: int,
    check: Callable[[WorkerProcess], Awaitable[int]],
) -> int:
    """Start a worker and ``kill -9`` it at a random moment, ``kills`` times; ``check`` what it
    left (returning the committed position) after each. Returns how many kills landed while a
    batch transaction was open."""
    mid_batch = progressed = 0
    for kill in range(kills):
        worker = await workers.start()
        before = await position(monitor)
        # Most kills land mid catch-up: a moment after the consumer's first commit (a catch-up
        # is over in a fraction of a second); some land anywhere, start-up included.
        if rng.random() < 0.8:
            await worker.wait_logged("consumer started")

            async def moved(since: int = before) -> bool:
                at = await position(monitor)
                return at > since or at == await head(monitor)

            await wait_until(moved, 20, "the consumer's first commit", worker, interval=0.005)
            await anyio.sleep(rng.uniform(0.0, 0.03))
        else:
            await anyio.sleep(rng.uniform(0.05, 0.5))
        assert worker.returncode is None, f"worker exited by itself (kill {kill})" + worker.tail()
        in_batch = await open_batches(monitor) > 0
        await worker.kill()
        at = await check(worker)
        mid_batch += in_batch
        progressed += at > before
    print(f"{kills} kills: {mid_batch} with a batch transaction open, {progressed} after progress")
    return mid_batch


async def test_kill_9_at_random_moments_loses_and_repeats_nothing(
    monitor: asyncpg.Connection[Any], workers: Workers
) -> None:
    """20,000 deposits; the worker is killed -9 at random moments (most while it applies a
    batch) and restarted; after every kill the read model is exactly the fold of the events up
    to the committed position, and in the end exactly the fold of all events, at the head."""
    rng = fault_rng()
    ledger = Ledger()
    await write_deposits(monitor, ledger, rng, accounts=ACCOUNTS, per_account=PER_ACCOUNT)

    async def check(worker: WorkerProcess) -> int:
        return await assert_consistent(monitor, worker)

    mid_batch = await kill_at_random_moments(monitor, workers, rng, KILLS, check)
    last = await workers.run_until_caught_up()
    await assert_exact(monitor, ledger, last)
    assert ledger.events == 20_000
    assert mid_batch >= 3, f"only {mid_batch} of {KILLS} kills landed while a batch was open"


CONCURRENCY = 16
CONCURRENT_KILLS = 12


async def test_kill_9_while_many_partitions_are_in_flight_loses_and_repeats_nothing(
    monitor: asyncpg.Connection[Any], workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with ``concurrency=16``: the projector, and a handler writing a receipt per
    deposit with ``ctx.write``, handle 16 accounts of a batch at once, each handler first
    waiting on a simulated I/O, so kills land while many partitions are in flight. After every
    kill the read model is the fold up to its position and the receipts are exactly one per
    deposit up to theirs; in the end both are exact, each account's in order."""
    monkeypatch.setenv("COUNTER_CONCURRENCY", str(CONCURRENCY))
    monkeypatch.setenv("COUNTER_RECEIPTS", "1")
    rng = fault_rng()
    ledger = Ledger()
    # Few deposits of an account in a row: a batch of 200 spans 50 accounts (partitions).
    await write_deposits(monitor, ledger, rng, accounts=200, per_account=40, chunk=4)

    async def check(worker: WorkerProcess) -> int:
        await assert_receipts_consistent(monitor, worker)
        return await assert_consistent(monitor, worker)

    mid_batch = await kill_at_random_moments(monitor, workers, rng, CONCURRENT_KILLS, check)
    last = await workers.run_until_caught_up()
    await assert_exact(monitor, ledger, last)
    await assert_receipts_exact(monitor, ledger, last)
    assert ledger.events == 8_000
    assert mid_batch >= 3, (
        f"only {mid_batch} of {CONCURRENT_KILLS} kills landed while a batch was open"
    )
    # The handlers did run concurrently: some process saw all 16 partitions waiting at once.
    most = max(
        (
            e["count"]
            for w in workers.started
            for e in w.events()
            if e.get("event") == "handlers in flight"
        ),
        default=0,
    )
    assert most == CONCURRENCY, f"at most {most} handlers in flight" + tails(*workers.started)


async def test_kill_9_of_a_handler_whose_positions_wait_loses_nothing(
    monitor: asyncpg.Connection[Any],
    workers: Workers,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A handler that writes nothing in the database (its effect is a line in a file) commits
    its position only every ``position_interval`` while it catches up; killed -9 at random
    moments, it hands messages over again after a restart but never skips one: in the end every
    deposit has its line, and the position is the head."""
    notices = tmp_path / "notices"
    monkeypatch.setenv("COUNTER_NOTICES", str(notices))
    rng = fault_rng()
    ledger = Ledger()
    await write_deposits(monitor, ledger, rng, accounts=ACCOUNTS, per_account=PER_ACCOUNT)
    behind = 0
    for _ in range(8):
        worker = await workers.start(position_interval=0.2, batch_size=100)
        await worker.wait_logged("consumer started")
        await anyio.sleep(rng.uniform(0.05, 0.6))
        await worker.kill()
        lines = notices.read_text().splitlines() if notices.exists() else []
        handled = {tuple(line.split()) for line in lines if len(line.split()) == 2}
        committed = await position(monitor, "notices:counter")
        # Everything up to the committed position has its line (handled before it committed).
        upto = await monitor.fetch(
            "SELECT data->>'account_id', (data->>'seq') FROM message_store.messages"
            " WHERE global_position <= $1",
            committed,
        )
        missing = [row for row in upto if (row[0], row[1]) not in handled]
        assert not missing, f"{len(missing)} deposits up to {committed} have no line"
        # More than a batch past it: positions waited (without, at most the batch in flight).
        behind += len(handled) - len(upto) > 100
    print(f"8 kills: {behind} found the handler more than a batch past its committed position")
    await workers.run_until_caught_up()
    handled = {tuple(line.split()) for line in notices.read_text().splitlines()}
    expected = {
        (account, str(seq)) for account, row in ledger.accounts.items() for seq in range(row[1])
    }
    assert expected <= handled
    head = await monitor.fetchval("SELECT max(global_position) FROM message_store.messages")
    assert await position(monitor, "notices:counter") == head
    assert behind >= 1, "no kill found the handler more than a batch past its committed position"
