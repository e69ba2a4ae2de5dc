"""SIGTERM: stop reading, finish (or roll back) the batch in flight within the deadline, exit 0."""

from __future__ import annotations

import random
import signal
from typing import TYPE_CHECKING, Any

import pytest

from tests.faults._support import (
    Ledger,
    assert_consistent,
    assert_exact,
    connect,
    head,
    position,
    wait_until,
    write_deposits,
)

if TYPE_CHECKING:
    import asyncpg

    from tests.faults._support import Workers

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MARGIN = 3.0  # seconds allowed beyond the shutdown deadline: interpreter and pool teardown


async def test_sigterm_mid_catch_up_exits_0_in_time_and_restart_is_exact(
    monitor: asyncpg.Connection[Any], workers: Workers
) -> None:
    """SIGTERM while catching up on 20,000 events: exit 0 within the deadline, a committed
    position short of the head that matches the read model; a restart finishes exactly."""
    ledger = Ledger()
    await write_deposits(monitor, ledger, random.Random(4), accounts=250, per_account=80)
    deadline = 5.0
    worker = await workers.start(shutdown_deadline=deadline)

    async def started_applying() -> bool:
        worker.assert_running()
        return await position(monitor) > 0

    await wait_until(started_applying, 20, "the first committed batch", worker)
    code, took = await worker.stop(within=deadline + MARGIN)
    assert code == 0, f"exit code {code} after SIGTERM" + worker.tail()
    assert worker.logged("stopping: finishing batches in flight"), worker.tail()
    at = await assert_consistent(monitor, worker)
    top = await head(monitor)
    assert 0 < at < top, f"position {at} after SIGTERM; expected mid catch-up (head {top})"
    print(f"SIGTERM at position {at} of {top}: exited 0 in {took:.2f}s")
    last = await workers.run_until_caught_up()
    await assert_exact(monitor, ledger, worker, last)


async def wait_until_blocked(monitor: asyncpg.Connection[Any], worker: Any) -> None:
    """Wait until the worker's batch waits on a row lock held by the test."""

    async def blocked() -> bool:
        worker.assert_running()
        return bool(
            await monitor.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'worker' AND wait_event_type = 'Lock'"
            )
        )

    await wait_until(blocked, 20, "the worker's batch to wait on the locked row", worker)


async def test_sigterm_with_a_blocked_batch_rolls_it_back_within_the_deadline(
    monitor: asyncpg.Connection[Any], workers: Workers, database_dsn: str
) -> None:
    """A batch that cannot finish (a read-model row is locked by another transaction) is rolled
    back when the shutdown deadline passes: exit 0 in time, nothing half-applied."""
    ledger = Ledger()
    await write_deposits(monitor, ledger, random.Random(5), accounts=50, per_account=40)
    first = await workers.run_until_caught_up()  # creates the table; then more events to apply
    await write_deposits(monitor, ledger, random.Random(6), accounts=50, per_account=4)
    blocker = await connect(database_dsn)
    try:
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("SELECT 1 FROM balances WHERE account_id = 'acc0007' FOR UPDATE")
        deadline = 2.0
        worker = await workers.start(shutdown_deadline=deadline)

        await wait_until_blocked(monitor, worker)
        before = await position(monitor)
        code, took = await worker.stop(within=deadline + MARGIN)
        assert code == 0, f"exit code {code} after SIGTERM" + worker.tail()
        assert took >= deadline - 0.5, f"exited after {took:.2f}s: the batch cannot have finished"
        assert await position(monitor) == before, worker.tail()
        await assert_consistent(monitor, worker)
        await locked.rollback()
    finally:
        await blocker.close()
    last = await workers.run_until_caught_up()
    await assert_exact(monitor, ledger, first, worker, last)


async def test_a_second_signal_exits_at_once_and_loses_nothing(
    monitor: asyncpg.Connection[Any], workers: Workers, database_dsn: str
) -> None:
    """SIGTERM starts the graceful stop; a second SIGTERM while a batch is stuck exits at once
    (130) without waiting for the deadline; the stuck batch is rolled back and a restart is
    exact."""
    ledger = Ledger()
    await write_deposits(monitor, ledger, random.Random(8), accounts=50, per_account=40)
    first = await workers.run_until_caught_up()
    await write_deposits(monitor, ledger, random.Random(9), accounts=50, per_account=4)
    blocker = await connect(database_dsn)
    try:
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("SELECT 1 FROM balances WHERE account_id = 'acc0011' FOR UPDATE")
        worker = await workers.start(shutdown_deadline=30)

        await wait_until_blocked(monitor, worker)
        before = await position(monitor)
        worker.process.send_signal(signal.SIGTERM)
        await worker.wait_logged("stopping: finishing batches in flight")
        code, took = await worker.stop(within=5)  # the second signal
        assert code == 130, f"exit code {code} after a second signal" + worker.tail()
        assert took < 5
        assert await position(monitor) == before, worker.tail()
        await locked.rollback()
    finally:
        await blocker.close()
    await assert_consistent(monitor, worker)
    last = await workers.run_until_caught_up()
    await assert_exact(monitor, ledger, first, worker, last)
