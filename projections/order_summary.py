"""``order_summary``: one row per order, kept one event at a time.

The handlers are written per event; the worker merges each batch's changes per row and writes
them in a few set-based statements at the end of the batch.
"""

from __future__ import annotations

from datetime import datetime  # noqa: TC003  (pydantic resolves field types at runtime)
from decimal import Decimal
from typing import TYPE_CHECKING

from domain import Order, OrderConfirmed, OrderPlaced, OrderShipped, domain
from worker import Increment, ReadModel, on

if TYPE_CHECKING:
    from worker import Context


class OrderSummary(ReadModel):
    """Per order: customer, status, item count, total, and when it was placed/confirmed/shipped.

    ``events`` counts the events applied to the row, so a double application would show.
    """

    __table__ = "order_summary"
    __key__ = "order_id"

    order_id: str
    customer_name: str
    status: str
    item_count: int
    total: Decimal
    placed_at: datetime | None = None
    confirmed_at: datetime | None = None
    shipped_at: datetime | None = None
    tracking: str | None = None
    events: int = 1


@domain.projector(name="order_summary", aggregates=[Order], read_models=[OrderSummary], version=1)
class OrderSummaryProjector:
    """Keeps ``order_summary`` from the order events."""

    @on(OrderPlaced)
    def placed(self, event: OrderPlaced, ctx: Context) -> None:
        ctx.table(OrderSummary).put(
            OrderSummary(
                order_id=event.order_id,
                customer_name=event.customer_name,
                status="PENDING",
                item_count=sum(item.quantity for item in event.items),
                total=sum((item.price * item.quantity for item in event.items), Decimal(0)),
                placed_at=ctx.message.time,
            )
        )

    @on(OrderConfirmed)
    def confirmed(self, event: OrderConfirmed, ctx: Context) -> None:
        ctx.table(OrderSummary).update(
            event.order_id,
            status="CONFIRMED",
            confirmed_at=event.confirmed_at,
            events=Increment(1),
        )

    @on(OrderShipped)
    def shipped(self, event: OrderShipped, ctx: Context) -> None:
        ctx.table(OrderSummary).update(
            event.order_id,
            status="SHIPPED",
            shipped_at=ctx.message.time,
            tracking=event.tracking,
            events=Increment(1),
        )
