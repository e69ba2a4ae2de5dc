"""A blue/green rebuild killed with SIGKILL resumes where it stopped and finishes exactly."""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.shop import assert_folded, read_statuses, read_summary, write_orders
from worker import MessageStore
from worker.store.database import create_pool

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


async def run(dsn: str, log: Path, *args: str) -> Any:
    env = {
        **os.environ,
        "WORKER_EVENT_STORE__DATABASE_URI": dsn,
        "WORKER_WORKER__BATCH_SIZE": "200",
    }
    command = [sys.executable, "-m", "worker", "--config", str(ROOT / "domain.toml"), *args]
    with log.open("ab") as out:
        return await anyio.open_process(command, stdout=out, stderr=out, env=env, cwd=ROOT)


async def test_killed_rebuild_resumes_and_switches_exactly(
    database_dsn: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 10_000))
    print(f"seed {seed}")
    rng = random.Random(seed)
    pool = await create_pool(database_dsn, max_size=4)
    log = tmp_path / "rebuild.log"
    try:
        fold = await write_orders(MessageStore(pool), 8000, seed=seed)
        first = await run(
            database_dsn,
            log,
            "run",
            "--until-caught-up",
            "--only",
            "order_summary",
            "--only",
            "orders_by_status",
        )
        assert await first.wait() == 0, log.read_text()[-3000:]
        await assert_folded(pool, fold)
        expected = (await read_summary(pool), await read_statuses(pool))

        async def building() -> int:
            """How far the generation being built has got (0 before its first commit)."""
            position: int = await pool.fetchval(
                "SELECT coalesce(max(position), 0) FROM worker.positions"
                " WHERE consumer LIKE 'order_summary:order#g%'"
            )
            return position

        kills = 0
        for _ in range(6):
            before = await building()
            process = await run(database_dsn, log, "rebuild", "order_summary")
            # Killed mid-rebuild: once it has committed past where the last one stopped.
            with anyio.fail_after(60):
                while process.returncode is None and await building() <= before:
                    await anyio.sleep(0.01)
            await anyio.sleep(rng.uniform(0.0, 0.05))
            if process.returncode is not None:
                break
            process.kill()
            await process.wait()
            kills += 1
            # Readers keep the old generation, whole, whatever instant the rebuild died at.
            assert (await read_summary(pool), await read_statuses(pool)) == expected
        final = await run(database_dsn, log, "rebuild", "order_summary")
        with anyio.fail_after(120):
            assert await final.wait() == 0, log.read_text()[-3000:]

        text = log.read_text()
        assert kills >= 1, "no kill landed during a rebuild"
        assert '"consumer": "order_summary:order#g' in text
        resumed = [
            line
            for line in text.splitlines()
            if "order_summary:order#g" in line
            and '"consumer started"' in line
            and '"position": 0' not in line
        ]
        assert resumed, "no rebuild resumed from a saved position"
        switches = text.count('"event": "projection switched"')
        generation = await pool.fetchval(
            "SELECT generation FROM worker.projections WHERE name = 'order_summary'"
        )
        assert generation == 1 + switches
        await assert_folded(pool, fold)
        assert await pool.fetchval(
            "SELECT position FROM worker.positions WHERE consumer = 'order_summary:order'"
        ) == await MessageStore(pool).category_head("order")
    finally:
        await pool.close()
