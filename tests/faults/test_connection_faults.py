"""Connection faults: the worker's backends are terminated under it; it reconnects and goes on."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest

from tests.faults._support import (
    Ledger,
    assert_consistent,
    assert_exact,
    caught_up,
    head,
    open_batches,
    position,
    terminate_worker_backends,
    wait_until,
    write_deposits,
)

if TYPE_CHECKING:
    import asyncpg

    from tests.faults._support import Workers

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TERMINATIONS = 5

# The listener's connection: the last statement it ran is its LISTEN or its health ping.
LISTENER = "query LIKE 'LISTEN%' OR query = 'SELECT 1'"


async def test_terminated_backends_mid_batch_reconnect_and_finish_exactly(
    monitor: asyncpg.Connection[Any], workers: Workers
) -> None:
    """Every backend of the worker (pool, lease, LISTEN) is terminated while a batch
    transaction is open, several times; the worker reconnects, and the read model ends exactly
    the fold of all events, at the category head."""
    ledger = Ledger()
    await write_deposits(monitor, ledger, random.Random(2), accounts=100, per_account=60)
    worker = await workers.start()
    await worker.wait_logged("consumer started")

    async def in_batch() -> bool:
        worker.assert_running()
        assert await position(monitor) < await head(monitor), (
            "caught up before every termination landed: write more events" + worker.tail()
        )
        return await open_batches(monitor) > 0

    for n in range(TERMINATIONS):
        before = await position(monitor)
        await wait_until(in_batch, 20, f"a batch transaction (termination {n})", worker, interval=0)
        # The first round ends the lease's connection besides the pool's; the lease reconnects
        # at its next heartbeat while batches go on, so a later round may find only the pool's.
        assert await terminate_worker_backends(monitor) >= (2 if n == 0 else 1)
        await assert_consistent(monitor, worker)

        async def progressed(before: int = before) -> bool:
            worker.assert_running()
            return await position(monitor) > before

        await wait_until(progressed, 20, f"progress after termination {n}", worker)
    await worker.wait_logged("transient failure; retrying batch")
    await caught_up(monitor, worker)
    code, _ = await worker.stop(within=10)
    assert code == 0, f"exit code {code} after SIGTERM" + worker.tail()
    await assert_exact(monitor, ledger, worker)


async def test_lost_listen_connection_reconnects_and_new_events_still_arrive(
    monitor: asyncpg.Connection[Any], workers: Workers
) -> None:
    """With the worker idle at the head, its LISTEN connection is terminated: the listener
    reconnects, and an event written afterwards is projected within a bounded wait."""
    ledger = Ledger()
    rng = random.Random(3)
    await write_deposits(monitor, ledger, rng, accounts=10, per_account=10)
    worker = await workers.start()
    await caught_up(monitor, worker)
    listener = await monitor.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        f"AND application_name = 'worker' AND ({LISTENER})"
    )
    assert listener is not None, "no LISTEN connection found" + worker.tail()
    assert await terminate_worker_backends(monitor, f"pid = {int(listener)}") == 1
    await worker.wait_logged("listen connection lost; reconnecting")

    async def listening_again() -> bool:
        pid = await monitor.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'worker' AND query LIKE 'LISTEN%'"
        )
        return pid is not None and pid != listener

    await wait_until(listening_again, 20, "a new LISTEN connection", worker)
    await write_deposits(monitor, ledger, rng, accounts=[3], per_account=1)
    await caught_up(monitor, worker)  # notified on the new connection, or else by polling
    await assert_exact(monitor, ledger, worker)
    code, _ = await worker.stop(within=10)
    assert code == 0, f"exit code {code} after SIGTERM" + worker.tail()
