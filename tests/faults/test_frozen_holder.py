"""A frozen leaseholder (SIGSTOP) is taken over once its lease runs out, and can never commit.

The holder's PostgreSQL session stays open while it is frozen, so only the lease's expiry can
free its consumers; the server ends its batch left idle in a transaction, so the row locks it
held never block the process that took over.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.faults._support import (
    CONSUMER,
    Ledger,
    WorkerProcess,
    assert_exact,
    caught_up,
    head,
    position,
    tails,
    wait_until,
    write_deposits,
)
from tests.integration.test_health import get

if TYPE_CHECKING:
    import asyncpg

    from tests.faults._support import Workers

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TTL = 3.0
RECEIPTS = "receipts:counter"
STARTED = "consumer started"
LOST = "lease lost; waiting to take it back"
WAITING = "waiting for consumer held by another process"


def metrics_port(worker: WorkerProcess) -> int:
    """The port a worker process serves its probes and metrics on (from its log)."""
    for entry in worker.events():
        if entry.get("event") == "health and metrics listening":
            return int(entry["port"])
    raise AssertionError("the worker logged no metrics port" + worker.tail())


async def _owner(conn: asyncpg.Connection[Any], consumer: str) -> str | None:
    owner: str | None = await conn.fetchval(
        "SELECT owner FROM worker.leases WHERE consumer = $1 AND expires_at > now()", consumer
    )
    return owner


def _pid_of(owner: str | None) -> int | None:
    return None if owner is None else int(owner.rsplit(":", 1)[1])


async def _receipts(conn: asyncpg.Connection[Any]) -> tuple[int, int]:
    """(receipts written, distinct deposits they follow)."""
    row = await conn.fetchrow(
        "SELECT count(*), count(DISTINCT metadata->>'causationMessageGlobalPosition') "
        "FROM message_store.messages WHERE message_store.category(stream_name) = 'receipt'"
    )
    assert row is not None
    return int(row[0]), int(row[1])


async def take_over_frozen(
    monitor: asyncpg.Connection[Any], workers: Workers, seed: int
) -> tuple[float, WorkerProcess, WorkerProcess, Ledger]:
    """Freeze the holder mid catch-up; return the takeover time, the two processes, the ledger."""
    ledger = Ledger()
    rng = random.Random(seed)
    await write_deposits(monitor, ledger, rng, accounts=200, per_account=150)
    holder = await workers.start(lease_ttl=TTL)

    async def applying() -> bool:
        holder.assert_running()
        return await position(monitor) > 0

    await wait_until(applying, 20, "the holder's first batch", holder)
    standby = await workers.start(lease_ttl=TTL, http_port=0, http_host="127.0.0.1")
    await standby.wait_logged(WAITING)
    assert await _pid_of_owner(monitor) == holder.process.pid, holder.tail()
    frozen_at_position = await position(monitor)
    assert frozen_at_position < await head(monitor), "caught up before it could be frozen"

    holder.process.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()

    async def standby_holds_both() -> bool:
        standby.assert_running()
        owners = [await _owner(monitor, name) for name in (CONSUMER, RECEIPTS)]
        return all(_pid_of(o) == standby.process.pid for o in owners)

    await wait_until(standby_holds_both, TTL + 5, "the standby to take over", holder, standby)
    return time.monotonic() - frozen, holder, standby, ledger


async def _pid_of_owner(conn: asyncpg.Connection[Any]) -> int | None:
    return _pid_of(await _owner(conn, CONSUMER))


async def test_a_frozen_holder_is_taken_over_and_goes_back_to_standby(
    monitor: asyncpg.Connection[Any], workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGSTOP the holder mid catch-up: the standby takes both consumers over within the lease
    ttl + 5 s and finishes; after SIGCONT the old holder logs that it lost the lease and waits
    as a standby; the read model is exact and no receipt was emitted twice."""
    monkeypatch.setenv("COUNTER_RECEIPTS", "1")
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 10_000))
    print(f"FAULT_SEED={seed}")
    took, holder, standby, ledger = await take_over_frozen(monitor, workers, seed)
    print(f"takeover after {took:.2f} s (lease ttl {TTL} s)")
    assert standby.logged("lease taken over"), standby.tail()
    _, metrics = await get(metrics_port(standby), "/metrics")
    for name in (CONSUMER, RECEIPTS):
        assert f'worker_lease_takeovers_total{{consumer="{name}"}} 1.0' in metrics, metrics
    await caught_up(monitor, standby)

    async def receipts_caught_up() -> bool:
        standby.assert_running()
        at = await monitor.fetchval(
            "SELECT position FROM worker.positions WHERE consumer = $1", RECEIPTS
        )
        return at == await head(monitor)

    await wait_until(receipts_caught_up, 30, "the receipts to catch up", standby)

    holder.process.send_signal(signal.SIGCONT)
    await holder.wait_logged(LOST)

    async def back_to_standby() -> bool:
        holder.assert_running()
        lost_at = max(i for i, e in enumerate(holder.events()) if e.get("event") == LOST)
        return any(e.get("event") == WAITING for e in holder.events()[lost_at:])

    await wait_until(back_to_standby, 10, "the old holder to wait as a standby", holder)
    assert await _pid_of_owner(monitor) == standby.process.pid, tails(holder, standby)
    for worker in (standby, holder):
        code, _ = await worker.stop(within=10)
        assert code == 0, f"exit code {code} after SIGTERM" + worker.tail()
    await assert_exact(monitor, ledger, holder, standby)
    written, distinct = await _receipts(monitor)
    assert written == distinct == ledger.events, (
        f"{written} receipts for {distinct} deposits of {ledger.events}" + tails(holder, standby)
    )
