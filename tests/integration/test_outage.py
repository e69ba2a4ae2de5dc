"""A database outage shows: the consumer's state, the gauges and the readiness probe say so,
and everything is back to normal once the database is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests.integration.proxy import Proxy
from tests.integration.test_engine import FAST, deposit, deposit_one, ledger, ledger_domain
from tests.integration.test_health import get
from worker import Runner
from worker.engine import lease
from worker.engine.lease import Lease
from worker.ops.runner import probes_of
from worker.ops.status import consumer_status

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio

CONSUMER = "ledger:acct"
SETTINGS = FAST.model_copy(
    update={
        "http_port": 0,
        "http_host": "127.0.0.1",
        "lease_ttl": 3.0,
        "unready_after": 1.0,
        "notify": False,
    }
)


def probes(runner: Any) -> Any:
    """The runner's probes server, once started."""
    server = probes_of(runner)
    assert server is not None
    return server


async def until(condition: Callable[[], Awaitable[bool]], what: str, within: float = 20) -> None:
    """Wait until ``condition()`` holds (looked at every 10 ms)."""
    with anyio.fail_after(within):
        while not await condition():
            await anyio.sleep(0.01)


async def sample(port: int, name: str, **labels: str) -> float | None:
    """The value of one sample of the worker's ``/metrics`` (None: not there)."""
    status, text = await get(port, "/metrics")
    assert status == 200, text
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None


async def test_a_database_outage_shows_in_state_gauges_and_readiness_then_passes(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Cut off from its database, a worker's consumer shows ``disconnected``,
    ``worker_database_up`` is 0, ``worker_consumer_lag_seconds`` keeps growing and, once
    ``unready_after`` has passed, ``/readyz`` is not ready; when the database is back, it takes
    its own lease back (neither counted nor logged as a takeover), is ready again and goes on
    handling messages."""
    await deposit(store, accounts=2, per_account=3)
    takeovers = lease.takeovers[CONSUMER]
    proxy = Proxy(database_dsn)
    runner = Runner(ledger_domain(), proxy.dsn, SETTINGS)
    state = "caught_up"

    async def in_state() -> bool:
        consumers = runner.result.consumers
        return probes_of(runner) is not None and bool(consumers) and consumers[0].state == state

    with capture_logs() as logs:
        async with anyio.create_task_group() as outer:
            await outer.start(proxy.serve)
            runner.dsn = proxy.dsn
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: runner.run(handle_signals=False))
                await until(in_state, "the first catch-up")
                assert probes_of(runner) is not None
                port = probes(runner).port
                assert await sample(port, "worker_database_up") == 1

                proxy.cut()
                state = "disconnected"
                await until(in_state, "the consumer disconnected")
                assert await sample(port, "worker_database_up") == 0
                assert await sample(port, "worker_consumer_state", state="disconnected") == 1
                first = await sample(port, "worker_consumer_lag_seconds", consumer=CONSUMER)
                assert first is not None

                async def growing() -> bool:
                    now = await sample(port, "worker_consumer_lag_seconds", consumer=CONSUMER)
                    return now is not None and now > first + 0.5

                await until(growing, "the lag in seconds growing")

                async def unready() -> bool:
                    return (await get(port, "/readyz"))[0] == 503

                await until(unready, "/readyz not ready")
                assert f"{CONSUMER}=disconnected" in (await get(port, "/readyz"))[1]

                proxy.restore()
                state = "caught_up"
                await until(in_state, "caught up again")
                assert (await get(port, "/readyz"))[0] == 200
                assert await sample(port, "worker_database_up") == 1
                await deposit_one(store, "acct-0", "a0", 3)  # written after the outage

                async def handled() -> bool:
                    return (await ledger(pool)).get("a0") == [0, 1, 2, 3]

                await until(handled, "a message written after the outage handled")
                assert (
                    await sample(port, "worker_consumer_lag_seconds", consumer=CONSUMER) or 0
                ) < 5
                runner.request_stop()
            outer.cancel_scope.cancel()
    events = [e["event"] for e in logs]
    assert "lease taken back" in events, events
    assert "lease taken over" not in events, events
    assert lease.takeovers[CONSUMER] == takeovers


async def test_a_holder_that_reconnects_takes_its_own_lease_back_not_over(
    pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A holder whose lease connection was cut takes its own lease (same owner, same epoch)
    back on a new connection: logged as taken back, neither logged nor counted as a takeover."""
    holder = Lease(database_dsn, "c:back", ttl=5.0, retry_interval=0.02)
    takeovers = lease.takeovers["c:back"]
    try:
        assert await holder.try_acquire()
        ended = await pool.fetchval(
            "SELECT count(pg_terminate_backend(holder_pid)) FROM worker.leases "
            "WHERE consumer = 'c:back'"
        )
        assert ended == 1
        with capture_logs() as logs, anyio.fail_after(10):
            assert await holder.acquire()
        events = [e["event"] for e in logs]
        assert "lease taken back" in events, events
        assert "lease taken over" not in events, events
        assert lease.takeovers["c:back"] == takeovers
    finally:
        await holder.release()


async def test_status_shows_a_lease_lapsed_without_release_as_disconnected(
    store: MessageStore, pool: asyncpg.Pool[Any]
) -> None:
    """``worker status`` shows a consumer whose holder stopped renewing its lease without giving
    it up (it lost the database, froze or died) as ``disconnected``, and one whose lease was
    given up as ``not running``."""
    domain = ledger_domain()
    await pool.execute(
        "INSERT INTO worker.leases (consumer, epoch, owner, acquired_at, heartbeat_at, "
        "expires_at, holder_pid) VALUES ($1, 1, 'gone:1', now(), now(), now() - interval '1 s', "
        "-1)",
        CONSUMER,
    )
    [status] = await consumer_status(pool, domain)
    assert status.state == "disconnected"
    await pool.execute("UPDATE worker.leases SET expires_at = NULL WHERE consumer = $1", CONSUMER)
    [status] = await consumer_status(pool, domain)
    assert status.state == "not running"
