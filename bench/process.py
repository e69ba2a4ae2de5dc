"""Process managers: the example's fulfillment flow as a process manager against the same flow
as plain event handlers, and the delivery latency of deadlines.

**Throughput.** On a fresh scratch database (``worker_bench_process``) for each run, it places
``--orders`` orders (``OrderPlaced`` with 1-3 items, one transaction) and runs, in this process,
the flow's consumers until it has settled:

- *process manager*: the example's ``fulfillment`` (``domain/fulfillment.py``) and its three
  desks (``handlers/desks.py``);
- *plain handlers*: the same commands written by stateless event handlers (one per step,
  nothing remembered: no instance streams, no deadlines) and the same desks.

Both see the same events and write the same commands and answers (the process manager also
writes one transition per step, and its deadlines; the handlers' charge carries no amount, which
only the process remembers). The flow has settled once every consumer's committed position is its
category's head and every cancelled order has its ``OrderCancelled``. The rate is the events the
flow's consumers handled over the time from the run's start to then. The runs alternate (ABAB),
``--pairs`` times; medians, and the median and range of the per-pair ratios.

**Deadline latency.** A process manager schedules a deadline ``--after`` seconds ahead for each of
``--deadlines`` orders written over about 3 s in small random groups; latency is the time the
delivery's transaction marked the deadline fired (the server's clock) minus its due time
(``fired_at - due_at`` in ``worker.deadlines``): p50, p99, max.

    .venv/bin/python -m bench.process [--orders N] [--pairs P] [--deadlines N] [--after S]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

import domain.fulfillment
from bench.engine import fresh_database, server_dsn
from domain import domain as shop
from domain.fulfillment import (
    CancelOrder,
    ChargePayment,
    PaymentDeclined,
    PaymentReceived,
    ReleaseStock,
    ReserveStock,
    StockReserved,
    StockUnavailable,
    verdict,
)
from domain.order import OrderPlaced
from handlers import desks  # noqa: F401  (registers the desks)
from worker import (
    BaseEvent,
    Domain,
    ProcessManager,
    Runner,
    WorkerSettings,
    configure_logging,
    connect,
    handle,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import asyncpg

    from worker import Context

DATABASE = "worker_bench_process"
SETTINGS = WorkerSettings(batch_size=200, position_interval=0.0)
WRITE = "SELECT message_store.write_message($1, $2, $3, $4, $5, $6)"

domain.fulfillment.PAYMENT_TIMEOUT = 3600.0  # no payment times out during a run


class Flow:
    """The subscribers a run runs."""

    def __init__(self, subscribers: tuple[Any, ...]) -> None:
        self.subscribers = subscribers


def desk_subscribers() -> tuple[Any, ...]:
    names = {"inventory_desk", "payment_desk", "order_desk"}
    return tuple(s for s in shop.subscribers if s.name in names)


def process_flow() -> Flow:
    (fulfillment,) = (s for s in shop.subscribers if s.name == "fulfillment")
    return Flow((fulfillment, *desk_subscribers()))


def handler_flow() -> Flow:
    """The same steps as stateless handlers, one per category read."""
    plain = Domain("shop")

    @plain.event_handler(name="plain_order")
    class OnOrder:
        @handle(OrderPlaced)
        async def placed(self, event: OrderPlaced, ctx: Context) -> None:
            items = sum(i.quantity for i in event.items)
            reserve = ReserveStock(order_id=event.order_id, items=items)
            await ctx.write(f"inventory:command-{event.order_id}", reserve)

    @plain.event_handler(name="plain_inventory")
    class OnInventory:
        @handle(StockReserved)
        async def reserved(self, event: StockReserved, ctx: Context) -> None:
            charge = ChargePayment(order_id=event.order_id, amount=Decimal(0))
            await ctx.write(f"payment:command-{event.order_id}", charge)

        @handle(StockUnavailable)
        async def unavailable(self, event: StockUnavailable, ctx: Context) -> None:
            cancel = CancelOrder(order_id=event.order_id, reason="out of stock")
            await ctx.write(f"order:command-{event.order_id}", cancel)

    @plain.event_handler(name="plain_payment")
    class OnPayment:
        @handle(PaymentReceived)
        def paid(self, event: PaymentReceived, ctx: Context) -> None:
            return None

        @handle(PaymentDeclined)
        async def declined(self, event: PaymentDeclined, ctx: Context) -> None:
            order_id = event.order_id
            await ctx.write(f"inventory:command-{order_id}", ReleaseStock(order_id=order_id))
            cancel = CancelOrder(order_id=order_id, reason="payment declined")
            await ctx.write(f"order:command-{order_id}", cancel)

    return Flow((*plain.subscribers, *desk_subscribers()))


async def place_orders(dsn: str, orders: int) -> list[str]:
    rng = random.Random(7)
    ids = [f"ord{n:05d}" for n in range(orders)]
    conn = await connect(dsn)
    try:
        rows = []
        for n, order_id in enumerate(ids):
            items = [
                {"product_id": f"p{k}", "quantity": rng.randint(1, 3), "price": "2.50"}
                for k in range(rng.randint(1, 3))
            ]
            data = {"order_id": order_id, "customer_name": "c", "items": items}
            ident = f"00000000-0000-4000-8000-{n:012d}"
            rows.append((ident, f"order-{order_id}", "OrderPlaced", data, None, None))
        async with conn.transaction():
            await conn.executemany(WRITE, rows)
    finally:
        await conn.close()
    return ids


async def settled(conn: asyncpg.Connection[Any], flow: Flow, cancelled: int) -> bool:
    """Every consumer of the flow at its category's head, every cancellation answered."""
    for subscriber in flow.subscribers:
        for category in subscriber.categories:
            head = await conn.fetchval(
                "SELECT coalesce(max(global_position), 0) FROM message_store.messages "
                "WHERE message_store.category(stream_name) = $1",
                category,
            )
            at = await conn.fetchval(
                "SELECT position FROM worker.positions WHERE consumer = $1",
                subscriber.consumer_name(category),
            )
            if (at or 0) < head:
                return False
    done = await conn.fetchval(
        "SELECT count(*) FROM message_store.messages WHERE type = 'OrderCancelled'"
    )
    return bool(done == cancelled)


async def wait_for(condition: Callable[[], Awaitable[bool]], interval: float) -> None:
    """Look at ``condition`` every ``interval`` seconds until it holds."""
    while True:
        if await condition():
            return
        await anyio.sleep(interval)


async def run_flow(server: str, flow: Flow, orders: int) -> tuple[float, int]:
    """One run on a fresh database: (events handled per second, events handled)."""
    dsn = await fresh_database(server, DATABASE)
    ids = await place_orders(dsn, orders)
    cancelled = sum(verdict(o) in ("no stock", "declined") for o in ids)
    runner = Runner(flow, dsn, SETTINGS)
    monitor = await connect(dsn)
    try:
        async with anyio.create_task_group() as tg:
            started = time.perf_counter()
            tg.start_soon(lambda: runner.run(handle_signals=False))
            await wait_for(lambda: settled(monitor, flow, cancelled), 0.01)
            elapsed = time.perf_counter() - started
            runner.request_stop()
    finally:
        await monitor.close()
    handled = sum(c.processed for c in runner.result.consumers)
    return handled / elapsed, handled


# -- deadline latency ------------------------------------------------------------------------

timers = Domain("timers")


@timers.event(category="parcel")
class Dispatched(BaseEvent):
    parcel_id: str


@timers.event
class Overdue(BaseEvent):
    parcel_id: str


@timers.process_manager(name="watch")
class Watch(ProcessManager):
    """Schedules one deadline per parcel, and ends when it comes."""

    delay: ClassVar[float] = 0.5
    parcel_id: str = ""

    @handle(Dispatched, correlate="parcel_id", start=True)
    def dispatched(self, event: Dispatched, ctx: Context) -> None:
        self.parcel_id = event.parcel_id
        ctx.schedule(after=self.delay, message=Overdue(parcel_id=event.parcel_id))

    @handle(Overdue, correlate="parcel_id", end=True)
    def overdue(self, event: Overdue, ctx: Context) -> None:
        return None


async def deadline_latency(server: str, count: int, after: float) -> list[float]:
    """Seconds from each deadline's due time to its delivery's firing."""
    Watch.delay = after
    dsn = await fresh_database(server, DATABASE)
    runner = Runner(timers, dsn, WorkerSettings())
    conn = await connect(dsn)
    rng = random.Random(11)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: runner.run(handle_signals=False))
            written = 0
            while written < count:
                group = min(rng.randint(1, 8), count - written)
                rows = [
                    (
                        f"00000000-0000-4000-8000-{written + k:012d}",
                        f"parcel-{written + k}",
                        "Dispatched",
                        {"parcel_id": str(written + k)},
                        None,
                        None,
                    )
                    for k in range(group)
                ]
                async with conn.transaction():
                    await conn.executemany(WRITE, rows)
                written += group
                await anyio.sleep(rng.uniform(0.0, 6.0 * group / count))
            fired = "SELECT count(*) FROM worker.deadlines WHERE fired_at IS NOT NULL"

            async def all_fired() -> bool:
                return bool(await conn.fetchval(fired) == count)

            await wait_for(all_fired, 0.05)
            runner.request_stop()
        rows = await conn.fetch(
            "SELECT extract(epoch FROM fired_at - due_at)::float8 FROM worker.deadlines"
        )
    finally:
        await conn.close()
    return sorted(r[0] for r in rows)


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def main(args: argparse.Namespace) -> None:
    configure_logging(level="warning")
    server = server_dsn()
    rates: dict[str, list[float]] = {"process manager": [], "plain handlers": []}
    ratios = []
    for pair in range(args.pairs):
        first = pair % 2 == 0  # ABAB, then BABA: which goes first alternates too
        order = [("process manager", process_flow), ("plain handlers", handler_flow)]
        measured = {}
        for label, flow in order if first else order[::-1]:
            rate, handled = await run_flow(server, flow(), args.orders)
            measured[label] = rate
            rates[label].append(rate)
            print(f"pair {pair + 1}: {label}: {rate:,.0f} events/s ({handled} events)")
        ratios.append(measured["process manager"] / measured["plain handlers"])
    for label, values in rates.items():
        print(f"{label}: median {statistics.median(values):,.0f} events/s")
    print(
        f"process manager / plain handlers: median {statistics.median(ratios):.2f} "
        f"(range {min(ratios):.2f}-{max(ratios):.2f})"
    )
    latencies = await deadline_latency(server, args.deadlines, args.after)
    print(
        f"deadline latency ({len(latencies)} deadlines, {args.after}s ahead): "
        f"p50 {percentile(latencies, 50) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--deadlines", type=int, default=500)
    parser.add_argument("--after", type=float, default=0.5)
    anyio.run(main, parser.parse_args())
