"""A projection whose read model's columns changed since its tables were built is not run
until rebuilt, and says so wherever an operator looks: `worker status` and `worker projections`
(`rebuild due`), `/readyz` (not ready) and the exit code of `run --until-caught-up` (4)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.cli import FAULTS_APP, worker
from tests.faults.app import tally
from tests.integration.test_health import get
from worker import NewMessage, Runner
from worker.ops.runner import probes_of
from worker.ops.settings import WorkerSettings

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio

TALLY_APP = FAULTS_APP.with_name("tally.toml")
TALLIES = "tallies:tally"
SETTINGS = WorkerSettings(
    poll_interval_min=0.01, poll_interval_max=0.05, http_port=0, http_host="127.0.0.1"
)


def probes(runner: Any) -> Any:
    """The runner's probes server, once started."""
    server = probes_of(runner)
    assert server is not None
    return server


async def columns_changed(store: MessageStore, pool: asyncpg.Pool[Any], dsn: str) -> None:
    """Build the projection's tables, then change a column under it (as a new release of the
    read model would): the live tables no longer fit the code."""
    await store.write("tally-a", NewMessage("Tallied", {"account_id": "a", "amount": 1}))
    built = await worker(dsn, "run", "--until-caught-up", config=TALLY_APP)
    assert built.code == 0, built
    await pool.execute("ALTER TABLE tally_totals__g1 RENAME COLUMN events TO counted")
    await store.write("tally-a", NewMessage("Tallied", {"account_id": "a", "amount": 2}))


async def test_until_caught_up_exits_4_and_status_shows_rebuild_due(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """`run --until-caught-up` does not run a projection due for a rebuild: exit 4, one stderr
    line naming it; `worker status` and `worker projections` show its state as `rebuild due`
    (not `not running`)."""
    await columns_changed(store, pool, database_dsn)

    ran = await worker(database_dsn, "run", "--until-caught-up", config=TALLY_APP)

    assert ran.code == 4, ran
    assert ran.errors[-1] == (
        "worker: projections not run until rebuilt (`worker rebuild NAME`): tallies"
    ), ran
    status = await worker(database_dsn, "status", "--json", config=TALLY_APP)
    assert [(r["consumer"], r["state"]) for r in json.loads(status.stdout)] == [
        (TALLIES, "rebuild due")
    ], status
    projections = await worker(database_dsn, "projections", "--json", config=TALLY_APP)
    assert [p["states"] for p in json.loads(projections.stdout)] == [["rebuild due"]], projections


async def test_readyz_is_not_ready_while_a_projection_is_due_for_a_rebuild(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A running worker holding back a projection due for a rebuild reports its consumers as
    `rebuild_due` and answers 503 on `/readyz`."""
    tally.GATE = None
    await columns_changed(store, pool, database_dsn)
    runner = Runner(tally.domain, database_dsn, SETTINGS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        with anyio.fail_after(10):
            while probes_of(runner) is None or not runner.result.needs_rebuild:
                await anyio.sleep(0.01)
        ready, body = await get(probes(runner).port, "/readyz")
        runner.request_stop()
    assert ready == 503 and f"{TALLIES}=rebuild_due" in body, body
