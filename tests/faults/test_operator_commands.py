"""Operator commands beside a running worker end in a clear, recoverable state.

``worker reset --to`` refuses positions that would silently skip messages; an in-place rebuild
beside a running, idle worker is picked up at once and reported as rebuilding until refilled.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.faults._support import APP_CONFIG, wait_until
from tests.faults.app import tally
from tests.integration.test_health import get
from worker import MessageStore, NewMessage, Runner
from worker.ops.runner import probes_of
from worker.ops.settings import WorkerSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

    import asyncpg

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

COUNTER = "balances:counter"
TALLY_CONFIG = APP_CONFIG.with_name("tally.toml")
TALLIES = "tallies:tally"
# Polling alone would take 5 s to notice anything: only a wake-up makes the worker quick.
QUIET = WorkerSettings(
    poll_interval_min=5, poll_interval_max=5, http_port=0, http_host="127.0.0.1", lease_ttl=30
)


def probes(runner: Any) -> Any:
    """The runner's probes server, once started."""
    server = probes_of(runner)
    assert server is not None
    return server


async def cli(dsn: str, config: Any, *args: str) -> tuple[int, str, str]:
    """Run ``worker --config CONFIG *args`` as a process; (exit code, stdout, stderr)."""
    env = {**os.environ, "WORKER_EVENT_STORE__DATABASE_URI": dsn}
    result = await anyio.run_process(
        [sys.executable, "-m", "worker", "--config", str(config), *args], env=env, check=False
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def counter_position(conn: Any) -> int | None:
    value: int | None = await conn.fetchval(
        "SELECT position FROM worker.positions WHERE consumer = $1", COUNTER
    )
    return value


async def test_reset_refuses_a_position_beyond_the_head_or_below_zero(
    database_dsn: str, pool: asyncpg.Pool[Any], store: MessageStore
) -> None:
    """``reset --to`` beyond the category head or below 0 is one line and exit 2, changing
    nothing; with ``--force`` it is set, ``status`` shows it as an error and
    ``run --until-caught-up`` exits 1 naming it."""
    for n in range(5):
        data = {"account_id": "a", "amount": 1, "seq": n}
        await store.write("counter-a", NewMessage("Deposited", data))
    head = await store.category_head("counter")
    assert head is not None
    code, _, err = await cli(database_dsn, APP_CONFIG, "run", "--until-caught-up")
    assert code == 0, err
    assert await counter_position(pool) == head

    for to in (str(head + 1), "999999999999", "-1"):
        code, out, err = await cli(database_dsn, APP_CONFIG, "reset", COUNTER, "--to", to)
        assert code == 2, (to, code, out, err)
        assert len(err.strip().splitlines()) == 1 and "--to" in err, err
        assert await counter_position(pool) == head, f"--to {to} changed the position"
    assert "--force" in (await cli(database_dsn, APP_CONFIG, "reset", COUNTER, "--to", "99"))[2]

    code, out, err = await cli(database_dsn, APP_CONFIG, "reset", COUNTER, "--to", "99", "--force")
    assert code == 0, err
    assert await counter_position(pool) == 99
    code, out, err = await cli(database_dsn, APP_CONFIG, "status", "--json")
    assert code == 0, err
    (row,) = [r for r in json.loads(out) if r["consumer"] == COUNTER]
    assert row["state"].startswith("error"), row
    code, out, err = await cli(database_dsn, APP_CONFIG, "run", "--until-caught-up")
    assert code == 1, (out, err)
    assert COUNTER in err and "head" in err, err


async def test_readyz_is_not_ready_while_a_position_is_beyond_the_head(
    database_dsn: str, pool: asyncpg.Pool[Any], store: MessageStore
) -> None:
    """A running worker whose consumer sits beyond its category head is not ready; once the
    store has passed that position it is ready again."""
    tally.GATE = None
    await store.write("tally-a", NewMessage("Tallied", {"account_id": "a", "amount": 1}))
    await pool.execute(
        "INSERT INTO worker.positions (consumer, position, high_water) VALUES ($1, 3, 3)", TALLIES
    )
    settings = QUIET.model_copy(update={"poll_interval_min": 0.01, "poll_interval_max": 0.05})
    runner = Runner(tally.domain, database_dsn, settings)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        consumer = await _started(runner)
        await wait_until(_state_is(consumer, "ahead"), 10, "the consumer to report 'ahead'")
        assert probes_of(runner) is not None
        status, body = await get(probes(runner).port, "/readyz")
        assert status == 503 and f"{TALLIES}=ahead" in body, body
        for _ in range(3):
            await store.write("tally-a", NewMessage("Tallied", {"account_id": "a", "amount": 1}))
        await wait_until(_state_is(consumer, "caught_up"), 10, "the consumer to catch up")
        assert (await get(probes(runner).port, "/readyz"))[0] == 200
        runner.request_stop()


async def _started(runner: Runner) -> Any:
    async def started() -> bool:
        return probes_of(runner) is not None and bool(runner.result.consumers)

    await wait_until(started, 10, "the runner to start")
    return runner.result.consumers[0]


def _state_is(consumer: Any, state: str) -> Any:
    async def check() -> bool:
        return bool(consumer.state == state)

    return check


@pytest.fixture
def gate() -> Iterator[None]:
    yield
    tally.GATE = tally.REACHED = None


async def test_in_place_rebuild_beside_an_idle_worker_refills_at_once(
    database_dsn: str, pool: asyncpg.Pool[Any], store: MessageStore, gate: None
) -> None:
    """A running worker on a quiet category (polling every 5 s) picks up ``rebuild --in-place``
    at once; until it has refilled the table it is 'rebuilding' in ``status`` and not ready;
    the command says the running worker refills it; the result equals the first build."""
    for n in range(60):
        await store.write(
            f"tally-a{n % 7}", NewMessage("Tallied", {"account_id": f"a{n % 7}", "amount": n})
        )
    head = await store.category_head("tally")
    assert head is not None
    runner = Runner(tally.domain, database_dsn, QUIET)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        consumer = await _started(runner)
        await wait_until(_state_is(consumer, "caught_up"), 10, "the first build")
        first = await pool.fetch("SELECT * FROM tally_totals ORDER BY account_id")
        assert probes_of(runner) is not None
        assert (await get(probes(runner).port, "/readyz"))[0] == 200

        tally.GATE, tally.REACHED, tally.GATE_AT = anyio.Event(), anyio.Event(), head - 10
        code, out, err = await cli(database_dsn, TALLY_CONFIG, "rebuild", "tallies", "--in-place")
        assert code == 0, err
        assert "running worker" in out and "refills" in out, out
        with anyio.fail_after(2):  # far below the 5 s poll: woken by the command
            await tally.REACHED.wait()
        status, body = await get(probes(runner).port, "/readyz")
        assert status == 503 and f"{TALLIES}=rebuilding" in body, body
        code, out, err = await cli(database_dsn, TALLY_CONFIG, "status", "--json")
        (row,) = json.loads(out)
        assert row["state"] == "rebuilding", row

        tally.GATE.set()
        await wait_until(_state_is(consumer, "caught_up"), 10, "the refill to catch up")
        assert (await get(probes(runner).port, "/readyz"))[0] == 200
        assert await pool.fetch("SELECT * FROM tally_totals ORDER BY account_id") == first
        refill = await pool.fetchval(
            "SELECT refill_to FROM worker.positions WHERE consumer = $1", TALLIES
        )
        assert refill is None
        code, out, err = await cli(database_dsn, TALLY_CONFIG, "status", "--json")
        assert json.loads(out)[0]["state"] == "caught up", out
        runner.request_stop()
