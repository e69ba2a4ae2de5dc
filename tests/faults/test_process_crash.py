"""Crash safety of a process manager: the example's fulfillment flow (order, inventory and
payment, a compensation path and a payment deadline) survives ``kill -9`` at random instants
with every order in its right terminal state and every command issued exactly once."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from domain import OrderItem, OrderPlaced
from domain.fulfillment import verdict
from tests.faults._support import Workers, open_batches, tails, wait_until
from tests.faults.test_crash import fault_rng
from worker import MessageStore

if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator

    import asyncpg

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ORDERS = 1_000
KILLS = 8
# The payment deadline, seconds: longer than a restart takes, so a payment the service does
# send always comes in time, whatever the kills delay; only unanswered charges time out.
TIMEOUT = 8.0

# Each instance's last transition: its status, reason, whether it ended, how many steps.
_INSTANCES = """
SELECT substr(stream_name, length('fulfillment-') + 1) AS order_id,
       (array_agg(data ORDER BY position DESC))[1] AS last, count(*) AS steps
FROM message_store.messages WHERE message_store.category(stream_name) = 'fulfillment'
GROUP BY stream_name
"""
_SENT = """
SELECT type, array_agg(substr(stream_name, strpos(stream_name, '-') + 1)) AS orders
FROM message_store.messages
WHERE message_store.category(stream_name) IN ('inventory:command', 'payment:command',
      'order:command', 'inventory', 'payment')
   OR type = 'OrderCancelled'
GROUP BY type
"""
_TWICE = """
SELECT stream_name, type, count(*) FROM message_store.messages
WHERE message_store.category(stream_name) <> 'fulfillment'
GROUP BY stream_name, type HAVING count(*) > 1
"""
# Steps of each path: placed, then the stock's answer, then the payment's (or its deadline).
STEPS = {"paid": 3, "declined": 3, "silent": 3, "no stock": 2}


@pytest.fixture
async def workers(database_dsn: str, tmp_path: Path) -> AsyncIterator[Workers]:
    """``worker run`` processes of the example application (its domain.toml)."""
    started = Workers(
        database_dsn, tmp_path, config=ROOT / "domain.toml", batch_size=100, shutdown_deadline=5
    )
    try:
        yield started
    finally:
        await started.kill_all()


async def place_orders(monitor: asyncpg.Connection[Any], rng: random.Random) -> list[str]:
    """``ORDERS`` orders placed, in one transaction; their ids."""
    store = MessageStore(monitor)
    ids = [f"ord{n:04d}" for n in range(ORDERS)]
    async with monitor.transaction():
        for order_id in ids:
            item = OrderItem(product_id="p", quantity=rng.randint(1, 3), price=Decimal("2.50"))
            placed = OrderPlaced(order_id=order_id, customer_name="c", items=[item])
            await store.write(f"order-{order_id}", placed.to_message(), conn=monitor)
    return ids


async def settled(monitor: asyncpg.Connection[Any]) -> bool:
    """Every instance ended and every desk has answered what it was sent."""
    ended = await monitor.fetchval(
        f"SELECT count(*) FROM ({_INSTANCES}) i WHERE (last->>'is_complete')::boolean"
    )
    sent = {row["type"]: len(row["orders"]) for row in await monitor.fetch(_SENT)}
    return (
        ended == ORDERS
        and sent.get("CancelOrder", 0) == sent.get("OrderCancelled", 0)
        and sent.get("ReleaseStock", 0) == sent.get("StockReleased", 0)
    )


async def test_kill_9_during_a_thousand_fulfillments_issues_every_command_once(
    monitor: asyncpg.Connection[Any], workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 orders through the fulfillment process and its desks, the worker killed -9 at
    random moments and restarted (payment deadlines falling due meanwhile); in the end every
    order is in the terminal state its simulated services decide, every command and answer
    exists exactly once (checked in SQL), no instance is left open and no deadline pending."""
    monkeypatch.setenv("FULFILLMENT_PAYMENT_TIMEOUT", str(TIMEOUT))
    rng = fault_rng()
    ids = await place_orders(monitor, rng)
    mid_batch = 0
    for kill in range(KILLS):
        worker = await workers.start()
        await worker.wait_logged("consumer started")
        await anyio.sleep(rng.uniform(0.05, 1.2))
        assert worker.returncode is None, f"worker exited by itself (kill {kill})" + worker.tail()
        mid_batch += await open_batches(monitor) > 0
        await worker.kill()
    print(f"{KILLS} kills, {mid_batch} with a batch transaction open")
    last = await workers.start()
    await wait_until(lambda: settled(monitor), 60, "every fulfillment to end", last, interval=0.2)
    code, _ = await last.stop(10)
    assert code == 0, last.tail()
    logs = tails(*workers.started[-2:])

    assert await monitor.fetch(_TWICE) == [], "a command or answer written twice" + logs
    expected = {order_id: verdict(order_id) for order_id in ids}
    instances = {r["order_id"]: r for r in await monitor.fetch(_INSTANCES)}
    assert set(instances) == set(ids)
    for order_id, answer in expected.items():
        row = instances[order_id]
        status = "paid" if answer == "paid" else "cancelled"
        got = (row["last"]["state"]["status"], row["last"]["is_complete"])
        assert got == (status, True), f"{order_id} ({answer}): {row['last']}" + logs
        assert row["steps"] == STEPS[answer], f"{order_id}: {row['steps']} steps" + logs
    sent = {row["type"]: sorted(row["orders"]) for row in await monitor.fetch(_SENT)}

    def having(*answers: str) -> list[str]:
        return sorted(o for o, a in expected.items() if a in answers)

    assert sent["ReserveStock"] == sorted(ids)
    assert sent["ChargePayment"] == having("paid", "declined", "silent")
    assert sent["ReleaseStock"] == sent["StockReleased"] == having("declined", "silent")
    assert sent["CancelOrder"] == sent["OrderCancelled"] == having("no stock", "declined", "silent")
    assert sent["PaymentReceived"] == having("paid")
    deadlines = await monitor.fetchrow(
        "SELECT count(*) FILTER (WHERE fired_at IS NOT NULL) AS fired,"
        " count(*) FILTER (WHERE fired_at IS NULL AND cancelled_at IS NULL) AS pending"
        " FROM worker.deadlines"
    )
    assert (deadlines["fired"], deadlines["pending"]) == (len(having("silent")), 0)
    assert await monitor.fetchval("SELECT count(*) FROM worker.dead_letters") == 0
