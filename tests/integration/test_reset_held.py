"""`worker reset` beside a running worker that holds the consumer: refused without `--wait`;
with it, the position is set under the worker, which goes on from there at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.cli import FAULTS_APP, worker
from tests.faults.app import tally
from worker import NewMessage, Runner
from worker.ops.settings import WorkerSettings

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio

TALLY_APP = FAULTS_APP.with_name("tally.toml")
TALLIES = "tallies:tally"
SETTINGS = WorkerSettings(poll_interval_min=0.01, poll_interval_max=0.05)


async def total(pool: asyncpg.Pool[Any]) -> int | None:
    found: int | None = await pool.fetchval("SELECT total FROM tally_totals")
    return found


async def test_reset_wait_sets_the_position_under_a_running_worker(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Without `--wait`, one line naming the holder (exit 1); with `--wait`, the command ends
    at once and the running worker handles again every message after the new position."""
    tally.GATE = None
    for amount in (1, 2, 4):
        await store.write("tally-a", NewMessage("Tallied", {"account_id": "a", "amount": amount}))
    runner = Runner(tally.domain, database_dsn, SETTINGS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        with anyio.fail_after(10):
            while await pool.fetchval("SELECT to_regclass('tally_totals')") is None or (
                await total(pool) != 7
            ):
                await anyio.sleep(0.01)

        refused = await worker(database_dsn, "reset", TALLIES, "--to", "1", config=TALLY_APP)
        reset = await worker(
            database_dsn, "reset", TALLIES, "--to", "1", "--wait", config=TALLY_APP, within=30
        )

        consumer = runner.result.consumers[0]
        with anyio.fail_after(10):
            while consumer.processed != 5:  # the messages after position 1 handled again
                await anyio.sleep(0.01)
        runner.request_stop()
    assert refused.code == 1 and len(refused.errors) == 1, refused
    assert "held by a running worker" in refused.errors[0], refused
    assert reset.code == 0, reset
    assert reset.stdout == f"{TALLIES}: position 3 -> 1\n", reset
