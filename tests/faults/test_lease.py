"""Lease exclusivity: two workers on one database; one applies batches, the other waits."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.faults._support import (
    CONSUMER,
    Ledger,
    assert_consistent,
    assert_exact,
    caught_up,
    head,
    position,
    wait_until,
    write_deposits,
)

if TYPE_CHECKING:
    import asyncpg

    from tests.faults._support import Workers

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

STARTED = "consumer started"
WAITING = "waiting for consumer held by another process"


async def test_second_worker_waits_then_takes_over_when_the_first_is_killed(
    monitor: asyncpg.Connection[Any], workers: Workers
) -> None:
    """Two workers start at once: one holds the consumer and applies batches, the other logs
    that it waits; when the holder is killed -9 mid catch-up, the other takes over and finishes,
    and the read model is exactly the fold of every event."""
    ledger = Ledger()
    rng = random.Random(7)
    await write_deposits(monitor, ledger, rng, accounts=250, per_account=200)
    pair = [await workers.start(), await workers.start()]

    async def one_runs_one_waits() -> bool:
        for worker in pair:
            worker.assert_running()
        return any(w.logged(STARTED) for w in pair) and any(w.logged(WAITING) for w in pair)

    await wait_until(one_runs_one_waits, 20, "one worker to run and the other to wait", *pair)
    holder, waiter = pair if pair[0].logged(STARTED) else pair[::-1]
    owner = await monitor.fetchval("SELECT owner FROM worker.leases WHERE consumer = $1", CONSUMER)
    assert owner.endswith(f":{holder.process.pid}"), f"lease owner {owner}" + holder.tail()

    # Killed mid catch-up: after its first commit, a moment later.
    async def committed() -> bool:
        return await position(monitor) > 0

    await wait_until(committed, 20, "the holder's first commit", holder)
    await anyio.sleep(rng.uniform(0.0, 0.05))
    assert not waiter.logged(STARTED), "both workers ran the consumer at once" + waiter.tail()
    await holder.kill()
    at = await assert_consistent(monitor, holder, waiter)
    assert at < await head(monitor), f"the holder caught up ({at}) before it was killed"
    assert not holder.logged(WAITING), holder.tail()

    await waiter.wait_logged(STARTED)
    await caught_up(monitor, waiter)
    epoch, owner = await monitor.fetchrow(
        "SELECT epoch, owner FROM worker.leases WHERE consumer = $1", CONSUMER
    )
    assert owner.endswith(f":{waiter.process.pid}"), f"lease owner {owner}" + waiter.tail()
    assert epoch == 2, f"lease epoch {epoch}: expected one acquisition per worker"
    code, _ = await waiter.stop(within=10)
    assert code == 0, f"exit code {code} after SIGTERM" + waiter.tail()
    await assert_exact(monitor, ledger, holder, waiter)


async def test_two_workers_to_the_end_apply_every_event_once(
    monitor: asyncpg.Connection[Any], workers: Workers
) -> None:
    """Two workers run side by side until the head is reached and both are stopped: every event
    is applied exactly once (the waiting one never commits), and both exit 0."""
    ledger = Ledger()
    await write_deposits(monitor, ledger, random.Random(8), accounts=100, per_account=50)
    pair = [await workers.start(), await workers.start()]

    async def at_head() -> bool:
        for worker in pair:
            worker.assert_running()
        return await position(monitor) == await head(monitor)

    await wait_until(at_head, 30, "the head", *pair)
    await wait_until(
        lambda: _any_logged(pair, WAITING), 10, "one worker to report that it waits", *pair
    )
    assert sum(w.logged(STARTED) for w in pair) == 1, "both ran the consumer" + "".join(
        w.tail() for w in pair
    )
    for worker in pair:
        code, _ = await worker.stop(within=10)
        assert code == 0, f"exit code {code} after SIGTERM" + worker.tail()
    await assert_exact(monitor, ledger, *pair)


async def _any_logged(pair: list[Any], event: str) -> bool:
    return any(w.logged(event) for w in pair)


async def test_a_holder_whose_lease_connection_died_is_taken_over_at_once(
    monitor: asyncpg.Connection[Any], workers: Workers
) -> None:
    """The holder's lease connection is terminated while a standby waits: its session is gone,
    so the standby takes the consumer over at once (long before the 60 s ttl); the old holder's
    next renewal fails, it logs that it lost the lease and waits; every event is applied once."""
    ledger = Ledger()
    await write_deposits(monitor, ledger, random.Random(9), accounts=250, per_account=80)
    first = await workers.start(lease_ttl=60)

    async def applying() -> bool:
        first.assert_running()
        return await position(monitor) > 0

    await wait_until(applying, 20, "the first worker's first batch", first)
    second = await workers.start(lease_ttl=60)
    await second.wait_logged(WAITING)
    pid = await monitor.fetchval(
        "SELECT holder_pid FROM worker.leases WHERE consumer = $1", CONSUMER
    )
    await monitor.execute("SELECT pg_terminate_backend($1)", pid)
    await second.wait_logged("lease taken over", within=10)
    await first.wait_logged("lease lost; waiting to take it back", within=30)
    await caught_up(monitor, second)
    owner = await monitor.fetchval("SELECT owner FROM worker.leases WHERE consumer = $1", CONSUMER)
    assert owner.endswith(f":{second.process.pid}"), owner
    for worker in (first, second):
        code, _ = await worker.stop(within=10)
        assert code == 0, f"exit code {code} after SIGTERM" + worker.tail()
    await assert_exact(monitor, ledger, first, second)


async def test_sigterm_releases_the_leases(
    monitor: asyncpg.Connection[Any], workers: Workers
) -> None:
    """A worker stopped with SIGTERM gives its leases up: their rows are released, so
    ``worker status`` shows no leaseholder and a successor takes them without a takeover."""
    ledger = Ledger()
    await write_deposits(monitor, ledger, random.Random(10), accounts=20, per_account=10)
    first = await workers.start(lease_ttl=60)
    await caught_up(monitor, first)
    live = await monitor.fetchval(
        "SELECT count(*) FROM worker.leases WHERE consumer = $1 AND expires_at > now()", CONSUMER
    )
    assert live == 1, first.tail()
    code, _ = await first.stop(within=10)
    assert code == 0, first.tail()
    rows = await monitor.fetch("SELECT consumer, expires_at FROM worker.leases")
    assert rows and all(r["expires_at"] is None for r in rows), rows
    second = await workers.start(lease_ttl=60)
    await second.wait_logged(STARTED)
    assert not second.logged("lease taken over"), second.tail()
    code, _ = await second.stop(within=10)
    assert code == 0, second.tail()
    await assert_exact(monitor, ledger, first, second)
