"""Time-bound leases in-process: a holder that cannot renew fences itself in time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
from structlog.testing import capture_logs

from tests.integration.test_engine import FAST, deposit_one, ledger, ledger_domain, position
from worker import Runner
from worker.engine.lease import Lease

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio

CONSUMER = "ledger:acct"
LOST = "lease lost; waiting to take it back"


async def _wait(condition: Any, within: float, what: str) -> None:
    with anyio.fail_after(within):
        while not await condition():
            await anyio.sleep(0.01)


async def test_a_holder_that_cannot_renew_stops_before_its_lease_runs_out(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Someone locks the lease row, so the holder can neither renew nor commit: within two
    thirds of its ttl it abandons the batch in flight (rolled back, position unchanged) and
    logs that it lost the lease; once the row is free it takes the lease again with a new
    epoch and applies every event exactly once, in order."""
    for n in range(3):
        await deposit_one(store, "acct-1", "a1", n)
    ttl = 1.5
    runner = Runner(ledger_domain(), database_dsn, FAST.model_copy(update={"lease_ttl": ttl}))
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: runner.run(handle_signals=False))

            async def caught_up() -> bool:
                consumers = runner.result.consumers
                return bool(consumers) and consumers[0].state == "caught_up"

            await _wait(caught_up, 10, "the first catch-up")
            epoch = await pool.fetchval(
                "SELECT epoch FROM worker.leases WHERE consumer = $1", CONSUMER
            )
            before = await position(pool, CONSUMER)
            async with pool.acquire() as blocker:
                locked = blocker.transaction()
                await locked.start()
                await blocker.execute(
                    "SELECT 1 FROM worker.leases WHERE consumer = $1 FOR UPDATE", CONSUMER
                )
                blocked_at = anyio.current_time()
                for n in range(3, 6):
                    await deposit_one(store, "acct-1", "a1", n)

                async def fenced() -> bool:
                    return any(e["event"] == LOST for e in logs)

                await _wait(fenced, 5, "the holder to fence itself")
                took = anyio.current_time() - blocked_at
                assert took < ttl, f"still handling {took:.2f}s after its last chance to renew"
                assert await position(pool, CONSUMER) == before
                await locked.rollback()

            async def all_applied() -> bool:
                return await position(pool, CONSUMER) == await store.category_head("acct")

            await _wait(all_applied, 10, "the holder to take its lease back and go on")
            runner.request_stop()
    assert await ledger(pool) == {"a1": list(range(6))}
    new_epoch = await pool.fetchval("SELECT epoch FROM worker.leases WHERE consumer = $1", CONSUMER)
    assert new_epoch > epoch


async def test_an_expired_lease_is_taken_over_with_a_new_epoch(database_dsn: str) -> None:
    """A lease whose holder (alive, session open) stopped renewing is free once its ttl has
    passed, not before: another taker gets it with the next epoch, and the old holder's renewal
    then fails."""
    first = Lease(database_dsn, "c:z", ttl=1.0)
    second = Lease(database_dsn, "c:z", ttl=1.0)
    try:
        assert await first.try_acquire()
        taken_at = anyio.current_time()
        with anyio.fail_after(5):
            while not await second.try_acquire(keep_connection=True):
                await anyio.sleep(0.02)
        waited = anyio.current_time() - taken_at
        assert 0.9 <= waited < 2.0, f"taken over after {waited:.2f}s with a 1 s ttl"
        assert second.epoch == first.epoch + 1
        with pytest.raises(Exception, match="taken over or fenced"):
            await first.renew()
        assert not first.held
    finally:
        await first.release()
        await second.release()


async def test_a_release_the_server_does_not_answer_in_time_drops_its_connection(
    pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Someone holds the lease row while the holder gives its lease up: after two seconds the
    release gives up too and the connection, left mid-statement, is not kept for the next
    acquire, which opens a new one and takes the lease."""
    lease = Lease(database_dsn, "c:slow")
    assert await lease.try_acquire()
    async with pool.acquire() as blocker, blocker.transaction():
        await blocker.execute("SELECT 1 FROM worker.leases WHERE consumer = 'c:slow' FOR UPDATE")
        started = anyio.current_time()
        await lease.release(close=False)
        assert anyio.current_time() - started >= 1.9
        assert lease._conn is None, "a connection left mid-statement was kept"
    assert await lease.try_acquire()
    await lease.close()
