"""Resizing a consumer group while it works: the streams are handed over to the members of the
new size without a gap or a double, through kill -9 of holders of both sizes."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.cli import worker
from tests.faults._support import (
    Ledger,
    connect,
    diff,
    read_model,
    tails,
    wait_until,
    write_deposits,
)

if TYPE_CHECKING:
    import asyncpg

    from tests.faults._support import WorkerProcess, Workers

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

STARTED = "consumer started"
STANDING_BY = "consumer group of another size: standing by"


def started(process: WorkerProcess) -> list[str]:
    return [e["consumer"] for e in process.events() if e.get("event") == STARTED]


async def test_a_resize_under_load_through_kills_applies_every_deposit_once(
    monitor: asyncpg.Connection[Any],
    workers: Workers,
    database_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes run a group of 2 mid catch-up (paused while four processes of size 3 start
    and stand by, resumed before the resize); deposits keep coming while `worker group resize
    balances 3` runs and one old holder is killed -9 at the same moment; then a new member's
    holder is killed -9 mid catch-up and the standby takes it over. The projector counts every
    deposit with plain SQL (no idempotence of its own): each account's total, count and last
    seq match the ledger, with no deposit out of sequence, and the old processes never handle
    anything again."""
    seed = random.randrange(1_000_000)
    print(f"seed {seed}")
    rng = random.Random(seed)
    ledger = Ledger()
    await write_deposits(monitor, ledger, rng, accounts=300, per_account=60)
    monkeypatch.setenv("COUNTER_GROUP_SIZE", "2")
    old = [await workers.start(max_group_slots=1) for _ in range(2)]

    async def old_members_run() -> bool:
        return all(len(started(w)) == 1 and w.returncode is None for w in old)

    await wait_until(old_members_run, 30, "both members of 2 to run", *old)
    # Paused while the size-3 processes start (however long they take), so the old members are
    # still mid catch-up when the resize comes; resumed just before it.
    paused = await worker(database_dsn, "pause", "balances", "--reason", "standbys start")
    assert paused.code == 0, str(paused)
    monkeypatch.setenv("COUNTER_GROUP_SIZE", "3")
    new = [await workers.start(max_group_slots=1) for _ in range(4)]
    for process in new:
        await process.wait_logged(STANDING_BY, within=30)
    assert await read_model(monitor) != ledger.accounts, "caught up before the resize"
    resumed = await worker(database_dsn, "resume", "balances")
    assert resumed.code == 0, str(resumed)

    writer = await connect(database_dsn)
    try:
        async with anyio.create_task_group() as tg:

            async def keep_depositing() -> None:
                for _ in range(5):
                    await write_deposits(writer, ledger, rng, accounts=300, per_account=4)

            tg.start_soon(keep_depositing)
            resized: list[Any] = []

            async def resize() -> None:
                resized.append(await worker(database_dsn, "group", "resize", "balances", "3"))

            tg.start_soon(resize)
            await old[0].kill()
        done = resized[0]
        assert done.code == 0, str(done)
        assert "handed over from 2 to 3 members" in done.stdout, str(done)
    finally:
        await writer.close()

    async def three_new_members_run() -> bool:
        return sum(len(started(w)) for w in new) == 3

    await wait_until(three_new_members_run, 30, "three members of 3 to run", *new)
    victim = rng.choice([w for w in new if started(w)])
    await victim.kill()
    standby = next(w for w in new if not started(w))

    async def standby_took_over() -> bool:
        standby.assert_running()
        return len(started(standby)) == 1

    await wait_until(standby_took_over, 30, "the standby to take the killed member", *new)

    async def complete() -> bool:
        return await read_model(monitor) == ledger.accounts

    await wait_until(complete, 90, "every deposit to be applied", *old, *new)
    got = await read_model(monitor)
    assert got == ledger.accounts, diff(got, ledger.accounts) + tails(*old, *new)
    members = {c for w in new for c in started(w)}
    assert members == {f"balances:counter@{m}/3" for m in range(3)}, tails(*new)
    survivor = old[1]
    assert started(survivor) == started(survivor)[:1], "an old process ran again" + tails(survivor)
    for process in [survivor, *(w for w in new if w is not victim)]:
        code, _ = await process.stop(within=15)
        assert code == 0, process.tail()
