"""Process managers on the genuine MessageDB: instances, commands and the consumer's position
commit together; deadlines are delivered once when due, by whichever worker holds the
consumer, with the consumer asleep until then (its poll interval far longer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from worker import BaseEvent, Context, Domain, MessageStore, ProcessManager, Runner, handle
from worker.ops.process_metrics import ProcessCollector
from worker.ops.settings import WorkerSettings

if TYPE_CHECKING:
    import asyncpg

pytestmark = pytest.mark.anyio

TIMEOUT = 0.3
# Consumers poll once a minute: only the deadline's own wake-up delivers it within the test.
SLOW_POLL = WorkerSettings(
    poll_interval_min=60, poll_interval_max=60, retry_base_delay=0.001, retry_max_delay=0.01
)

domain = Domain("pmint")


@domain.event(category="order")
class OrderPlaced(BaseEvent):
    order_id: str
    timeout: float = TIMEOUT


@domain.event(category="payment")
class PaymentReceived(BaseEvent):
    order_id: str


@domain.event
class PaymentTimedOut(BaseEvent):
    order_id: str


@domain.command(category="payment")
class RequestPayment(BaseEvent):
    order_id: str


@domain.command(category="order")
class CancelOrder(BaseEvent):
    order_id: str


@domain.process_manager(name="checkout")
class Checkout(ProcessManager):
    order_id: str = ""
    status: str = "new"

    @handle(OrderPlaced, correlate="order_id", start=True)
    async def placed(self, event: OrderPlaced, ctx: Context) -> None:
        self.order_id, self.status = event.order_id, "paying"
        await ctx.write(
            f"payment:command-{event.order_id}", RequestPayment(order_id=event.order_id)
        )
        ctx.schedule(after=event.timeout, message=PaymentTimedOut(order_id=event.order_id))

    @handle(PaymentReceived, correlate="order_id", end=True)
    def paid(self, event: PaymentReceived, ctx: Context) -> None:
        self.status = "paid"

    @handle(PaymentTimedOut, correlate="order_id", end=True)
    async def timed_out(self, event: PaymentTimedOut, ctx: Context) -> None:
        self.status = "cancelled"
        await ctx.write(f"order:command-{self.order_id}", CancelOrder(order_id=self.order_id))


async def count(pool: asyncpg.Pool[Any], type_name: str) -> int:
    found: int = await pool.fetchval(
        "SELECT count(*) FROM message_store.messages WHERE type = $1", type_name
    )
    return found


async def statuses(pool: asyncpg.Pool[Any]) -> dict[str, tuple[str, bool]]:
    """Each instance's last transition: its status and whether it ended."""
    rows = await pool.fetch(
        """
        SELECT DISTINCT ON (stream_name) stream_name, data
        FROM message_store.messages WHERE category(stream_name) = 'checkout'
        ORDER BY stream_name, position DESC
        """
    )
    return {
        r["stream_name"]: (r["data"]["state"]["status"], r["data"]["is_complete"]) for r in rows
    }


async def run_until(
    dsn: str, workers: int, done: Any, settings: WorkerSettings = SLOW_POLL
) -> list[Runner]:
    """Run ``workers`` runners of the domain until ``done()`` is true, then stop them."""
    runners = [Runner(domain, dsn, settings) for _ in range(workers)]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for runner in runners:
                tg.start_soon(lambda r=runner: r.run(handle_signals=False))
            while not await done():
                await anyio.sleep(0.05)
            for runner in runners:
                runner.request_stop()
    return runners


async def test_an_unpaid_order_is_cancelled_by_its_deadline_once(
    worker_dsn: str, worker_pool: asyncpg.Pool[Any], worker_store: MessageStore
) -> None:
    """Order 1 is never paid: its timeout cancels it. Order 2 is paid (once its instance
    has started, well before its timeout): its timeout is cancelled. One command of each kind
    per order; every instance ended."""
    await worker_store.write("order-1", OrderPlaced(order_id="1").to_message())
    await worker_store.write("order-2", OrderPlaced(order_id="2", timeout=600).to_message())
    paid = False

    async def done() -> bool:
        nonlocal paid
        if not paid and await count(worker_pool, "RequestPayment") == 2:
            await worker_store.write("payment-2", PaymentReceived(order_id="2").to_message())
            paid = True
        return len(await statuses(worker_pool)) == 2 and all(
            ended for _, ended in (await statuses(worker_pool)).values()
        )

    (runner,) = await run_until(worker_dsn, 1, done)
    assert await statuses(worker_pool) == {
        "checkout-1": ("cancelled", True),
        "checkout-2": ("paid", True),
    }
    assert await count(worker_pool, "RequestPayment") == 2
    assert await count(worker_pool, "CancelOrder") == 1
    rows = await worker_pool.fetch(
        "SELECT instance, fired_at IS NOT NULL AS fired, cancelled_at IS NOT NULL AS cancelled "
        "FROM worker.deadlines ORDER BY instance"
    )
    assert [tuple(r) for r in rows] == [("checkout-1", True, False), ("checkout-2", False, True)]
    metrics = ProcessCollector(runner.result.consumers)
    await metrics.refresh(worker_store)
    samples = {
        (s.name, s.labels.get("consumer") or s.labels.get("process")): s.value
        for family in metrics.collect()
        for s in family.samples
    }
    assert samples[("worker_process_instances_started_total", "checkout:order")] == 2
    assert samples[("worker_process_instances_ended_total", "checkout:payment")] == 1
    assert samples[("worker_process_deadlines_fired_total", "checkout:order")] == 1
    assert samples[("worker_process_instances_active", "checkout")] == 0
    assert samples[("worker_process_deadlines_pending", "checkout")] == 0


async def test_several_workers_deliver_each_deadline_once(
    worker_dsn: str, worker_pool: asyncpg.Pool[Any], worker_store: MessageStore
) -> None:
    """Three workers, 30 unpaid orders: 30 cancellations, none twice."""
    orders = [str(n) for n in range(30)]
    for n in orders:
        await worker_store.write(f"order-{n}", OrderPlaced(order_id=n).to_message())

    async def done() -> bool:
        return await worker_pool.fetchval(
            "SELECT count(*) FROM worker.deadlines WHERE fired_at IS NOT NULL"
        ) == len(orders) and await count(worker_pool, "CancelOrder") == len(orders)

    await run_until(worker_dsn, 3, done)
    per_order = await worker_pool.fetch(
        "SELECT stream_name, count(*) FROM message_store.messages WHERE type = 'CancelOrder' "
        "GROUP BY stream_name HAVING count(*) > 1"
    )
    assert per_order == []
    assert set((await statuses(worker_pool)).values()) == {("cancelled", True)}


async def test_concurrent_changes_of_one_instance_are_each_applied_once(
    worker_dsn: str, worker_pool: asyncpg.Pool[Any], worker_store: MessageStore
) -> None:
    """The order and payment consumers change the same instances at once: each change is
    applied once, on the other's (the process's category lock orders them; nothing parked)."""
    orders = [str(n) for n in range(40)]
    for n in orders:
        await worker_store.write(f"order-{n}", OrderPlaced(order_id=n).to_message())
        await worker_store.write(f"payment-{n}", PaymentReceived(order_id=n).to_message())

    async def done() -> bool:
        found = await statuses(worker_pool)
        return len(found) == len(orders) and all(ended for _, ended in found.values())

    fast = WorkerSettings(batch_size=5, poll_interval_min=0.01, poll_interval_max=0.05)
    await run_until(worker_dsn, 1, done, fast)
    assert await worker_pool.fetchval("SELECT count(*) FROM worker.dead_letters") == 0
    found = await statuses(worker_pool)
    # A payment read before its order's start is skipped (no instance yet): that order is
    # then cancelled by its timeout; all others are paid.
    assert set(found.values()) <= {("paid", True), ("cancelled", True)}
    assert await count(worker_pool, "RequestPayment") == len(orders)
