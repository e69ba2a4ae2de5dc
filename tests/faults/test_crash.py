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
    open_batches,
    position,
    write_deposits,
)

if TYPE_CHECKING:
    import asyncpg

    from tests.faults._support import Workers

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ACCOUNTS = 250
PER_ACCOUNT = 80  # 20,000 events
KILLS = 25


async def test_kill_9_at_random_moments_loses_and_repeats_nothing(
    monitor: asyncpg.Connection[Any], workers: Workers
) -> None:
    """20,000 deposits; the worker is killed -9 at random moments (most while it applies a
    batch) and restarted; after every kill the read model is exactly the fold of the events up
    to the committed position, and in the end exactly the fold of all events, at the head."""
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 2**32))
    print(f"fault seed: {seed} (set FAULT_SEED={seed} to repeat)")
    rng = random.Random(seed)
    ledger = Ledger()
    await write_deposits(monitor, ledger, rng, accounts=ACCOUNTS, per_account=PER_ACCOUNT)
    mid_batch = progressed = 0
    for kill in range(KILLS):
        worker = await workers.start()
        before = await position(monitor)
        # Most kills wait for the consumer to be running; some land during start-up.
        if rng.random() < 0.8:
            await worker.wait_logged("consumer started")
        await anyio.sleep(rng.uniform(0.05, 0.5))
        assert worker.returncode is None, f"worker exited by itself (kill {kill})" + worker.tail()
        in_batch = await open_batches(monitor) > 0
        await worker.kill()
        at = await assert_consistent(monitor, worker)
        mid_batch += in_batch
        progressed += at > before
    print(f"{KILLS} kills: {mid_batch} with a batch transaction open, {progressed} after progress")
    last = await workers.run_until_caught_up()
    await assert_exact(monitor, ledger, last)
    assert ledger.events == 20_000
    assert mid_batch >= 3, f"only {mid_batch} of {KILLS} kills landed while a batch was open"
