"""A consumer group across worker processes: replicas share the members, a standby takes over."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest

from tests.faults._support import Ledger, diff, read_model, tails, wait_until, write_deposits

if TYPE_CHECKING:
    import asyncpg

    from tests.faults._support import Workers

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

STARTED = "consumer started"
WAITING = "waiting for consumer held by another process"


async def test_a_standby_takes_over_a_killed_members_slot(
    monitor: asyncpg.Connection[Any], workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three workers, a group of two members, one member per worker: two run, one waits; the
    holder of a member is killed -9 mid catch-up, the standby takes that member over, and every
    event is applied exactly once, in order."""
    monkeypatch.setenv("COUNTER_GROUP_SIZE", "2")
    ledger = Ledger()
    rng = random.Random(11)
    await write_deposits(monitor, ledger, rng, accounts=250, per_account=80)
    trio = [await workers.start(max_group_slots=1) for _ in range(3)]

    def started(worker: Any) -> int:
        return sum(e.get("event") == STARTED for e in worker.events())

    async def two_run_one_waits() -> bool:
        for worker in trio:
            worker.assert_running()
        waiting = [w for w in trio if started(w) == 0 and w.logged(WAITING)]
        return sorted(started(w) for w in trio) == [0, 1, 1] and len(waiting) == 1

    await wait_until(two_run_one_waits, 30, "two workers to run a member each", *trio)
    standby = next(w for w in trio if started(w) == 0)
    members = {e["consumer"] for w in trio for e in w.events() if e.get("event") == STARTED}
    assert members == {"balances:counter@0/2", "balances:counter@1/2"}
    victim = rng.choice([w for w in trio if w is not standby])
    assert await read_model(monitor) != ledger.accounts, "caught up before the kill"
    await victim.kill()

    async def standby_took_over() -> bool:
        standby.assert_running()
        return started(standby) == 1

    await wait_until(standby_took_over, 30, "the standby to take the killed member", *trio)

    async def complete() -> bool:
        return await read_model(monitor) == ledger.accounts

    await wait_until(complete, 60, "every event to be applied", *trio)
    got = await read_model(monitor)
    assert got == ledger.accounts, diff(got, ledger.accounts) + tails(*trio)
    for worker in trio:
        if worker is not victim:
            code, _ = await worker.stop(within=10)
            assert code == 0, worker.tail()
