"""How `worker run` ends: its exit code and what it says about the run (docs/commands.md)."""

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

PICKY_APP = FAULTS_APP.with_name("picky.toml")
NOTES = "notes:picky"
SCHEMA = (  # as picky.py's setup makes it
    "CREATE TABLE IF NOT EXISTS public.notes (account_id text, seq int, n bigserial);"
    "CREATE TABLE IF NOT EXISTS public.poison"
    " (account_id text PRIMARY KEY, reason text NOT NULL DEFAULT 'poisoned')"
)
QUICK = {"WORKER_WORKER__RETRY_BASE_DELAY": "0.001"}
TALLY_APP = FAULTS_APP.with_name("tally.toml")
TALLIES = "tallies:tally"
SETTINGS = WorkerSettings(poll_interval_min=0.01, poll_interval_max=0.05)


async def noted(store: MessageStore, account: str, *seqs: int) -> None:
    for seq in seqs:
        data = {"account_id": account, "seq": seq}
        await store.write(f"picky-{account}", NewMessage("Noted", data))


async def test_a_run_that_parked_messages_exits_3_saying_how_many_per_consumer(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """`worker run --until-caught-up` that parked messages exits 3; its last stderr line and
    its last log line (`worker stopped`) count them per consumer. A later run that parks
    nothing more exits 0."""
    await pool.execute(SCHEMA)
    await pool.execute("INSERT INTO public.poison VALUES ('b')")
    await noted(store, "a", 0, 1)
    await noted(store, "b", 0, 1, 2)

    ran = await worker(
        database_dsn, "run", "--until-caught-up", "--only", "notes", config=PICKY_APP, **QUICK
    )

    assert ran.code == 3, ran
    expected = f"worker: parked 3 message(s) in this run (`worker dlq list`): {NOTES} 3"
    assert ran.errors[-1] == expected, ran
    (stopped,) = ran.logged("worker stopped")
    assert stopped["parked"] == {NOTES: 3}, ran
    again = await worker(
        database_dsn, "run", "--until-caught-up", "--only", "notes", config=PICKY_APP, **QUICK
    )
    assert again.code == 0, again
    assert "parked" not in again.stderr, again


async def test_until_caught_up_beside_a_running_worker_exits_0_once_it_has_caught_up(
    store: MessageStore, database_dsn: str
) -> None:
    """`worker run --until-caught-up` beside a running worker that holds every lease stands by
    only until the holder has handled everything up to the head, then exits 0 saying so."""
    tally.GATE = None
    for amount in (1, 2, 3):
        await store.write("tally-a", NewMessage("Tallied", {"account_id": "a", "amount": amount}))
    runner = Runner(tally.domain, database_dsn, SETTINGS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        with anyio.fail_after(10):
            while not runner.result.consumers or runner.result.consumers[0].state != "caught_up":
                await anyio.sleep(0.01)

        beside = await worker(database_dsn, "run", "--until-caught-up", config=TALLY_APP, within=30)

        runner.request_stop()
    assert beside.code == 0, beside
    (done,) = beside.logged("caught up under another process's lease")
    assert done["consumer"] == TALLIES and done["position"] == 3, beside
