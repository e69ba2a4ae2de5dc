"""``order_summary``: one row per order, kept by a projector written one event at a time."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from domain import Order, OrderConfirmed, OrderPlaced, OrderShipped, domain
from worker import on

if TYPE_CHECKING:
    from worker import Context

SCHEMA = """
CREATE TABLE IF NOT EXISTS order_summary (
    order_id      text PRIMARY KEY,
    customer_name text NOT NULL,
    status        text NOT NULL,
    item_count    integer NOT NULL,
    total         numeric(12, 2) NOT NULL,
    placed_at     timestamptz,
    confirmed_at  timestamptz,
    shipped_at    timestamptz,
    tracking      text,
    events        integer NOT NULL DEFAULT 1
)
"""

_PLACED = """
INSERT INTO order_summary (order_id, customer_name, status, item_count, total, placed_at)
VALUES ($1, $2, 'PENDING', $3, $4, $5)
"""
_CONFIRMED = """
UPDATE order_summary SET status = 'CONFIRMED', confirmed_at = $2, events = events + 1
WHERE order_id = $1
"""
_SHIPPED = """
UPDATE order_summary SET status = 'SHIPPED', shipped_at = $2, tracking = $3, events = events + 1
WHERE order_id = $1
"""


@domain.projector(name="order_summary", aggregates=[Order])
class OrderSummaryProjector:
    """Per order: customer, status, item count, total, and when it was placed/confirmed/shipped.

    ``events`` counts the events applied to the row, so a double application would show.
    """

    async def setup(self, conn: Any) -> None:
        """Create the table (the worker calls this once before consuming)."""
        await conn.execute(SCHEMA)

    @on(OrderPlaced)
    async def placed(self, event: OrderPlaced, ctx: Context) -> None:
        total = sum((item.price * item.quantity for item in event.items), Decimal(0))
        count = sum(item.quantity for item in event.items)
        await ctx.conn.execute(
            _PLACED, event.order_id, event.customer_name, count, total, ctx.message.time
        )

    @on(OrderConfirmed)
    async def confirmed(self, event: OrderConfirmed, ctx: Context) -> None:
        await ctx.conn.execute(_CONFIRMED, event.order_id, event.confirmed_at)

    @on(OrderShipped)
    async def shipped(self, event: OrderShipped, ctx: Context) -> None:
        await ctx.conn.execute(_SHIPPED, event.order_id, ctx.message.time, event.tracking)
