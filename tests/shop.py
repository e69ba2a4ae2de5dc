"""A realistic order history for tests, and the read models it must fold into."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from domain import OrderConfirmed, OrderItem, OrderPlaced, OrderShipped

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore
    from worker.testing import MemoryMessageStore


@dataclass
class Fold:
    """What order_summary and orders_by_status must hold after the history."""

    orders: dict[str, tuple[str, int, Decimal, int]] = field(default_factory=dict)

    def statuses(self) -> dict[str, int]:
        counts = Counter(status for status, *_ in self.orders.values())
        return {s: counts.get(s, 0) for s in ("PENDING", "CONFIRMED", "SHIPPED")}


async def write_orders(store: MessageStore | MemoryMessageStore, count: int, seed: int = 1) -> Fold:
    """``count`` orders, placed, mostly confirmed and often shipped, interleaved in time (in
    MessageDB or in memory)."""
    rng = random.Random(seed)
    fold = Fold()
    pending: list[tuple[str, list[Any]]] = []
    for n in range(count):
        order_id = f"o{seed}x{n}"
        items = [
            OrderItem(
                product_id=f"p{rng.randint(1, 9)}",
                quantity=rng.randint(1, 3),
                price=Decimal(rng.randint(100, 2000)) / 100,
            )
            for _ in range(rng.randint(1, 3))
        ]
        events: list[Any] = [OrderPlaced(order_id=order_id, customer_name=f"c{n}", items=items)]
        status = "PENDING"
        if rng.random() < 0.8:
            events.append(OrderConfirmed(order_id=order_id, confirmed_at=datetime.now(UTC)))
            status = "CONFIRMED"
            if rng.random() < 0.7:
                events.append(OrderShipped(order_id=order_id, tracking=f"T{n}"))
                status = "SHIPPED"
        total = sum((i.price * i.quantity for i in items), Decimal(0))
        fold.orders[order_id] = (status, sum(i.quantity for i in items), total, len(events))
        pending.append((order_id, events))
    # Interleave streams: write each order's events in rounds, so batches mix orders.
    async with store.transaction() as conn:
        for round_ in range(3):
            for order_id, events in pending:
                if round_ < len(events):
                    message = events[round_].to_message()
                    await store.write(f"order-{order_id}", message, conn=conn)
    return fold


async def read_summary(conn: Any) -> dict[str, tuple[str, int, Decimal, int]]:
    rows = await conn.fetch("SELECT order_id, status, item_count, total, events FROM order_summary")
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


async def read_statuses(conn: Any) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, orders FROM orders_by_status")
    found = {r[0]: r[1] for r in rows}
    return {s: found.get(s, 0) for s in ("PENDING", "CONFIRMED", "SHIPPED")}


async def assert_folded(pool: asyncpg.Pool[Any], fold: Fold) -> None:
    assert await read_summary(pool) == fold.orders
    assert await read_statuses(pool) == fold.statuses()
