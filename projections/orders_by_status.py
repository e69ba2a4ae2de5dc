"""``orders_by_status``: how many orders are in each status, kept one event at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain import Order, OrderConfirmed, OrderPlaced, OrderShipped, domain
from worker import Increment, ReadModel, on

if TYPE_CHECKING:
    from worker import Context


class OrdersByStatus(ReadModel):
    """The number of orders in one status."""

    __table__ = "orders_by_status"
    __key__ = "status"

    status: str
    orders: int = 0


@domain.projector(name="orders_by_status", aggregates=[Order], read_models=[OrdersByStatus])
class OrdersByStatusProjector:
    """Moves an order from one status's count to the next as it is placed, confirmed, shipped."""

    @on(OrderPlaced)
    def placed(self, event: OrderPlaced, ctx: Context) -> None:
        ctx.table(OrdersByStatus).add("PENDING", orders=Increment(1))

    @on(OrderConfirmed)
    def confirmed(self, event: OrderConfirmed, ctx: Context) -> None:
        self._move(ctx, "PENDING", "CONFIRMED")

    @on(OrderShipped)
    def shipped(self, event: OrderShipped, ctx: Context) -> None:
        self._move(ctx, "CONFIRMED", "SHIPPED")

    @staticmethod
    def _move(ctx: Context, old: str, new: str) -> None:
        counts = ctx.table(OrdersByStatus)
        counts.add(old, orders=Increment(-1))
        counts.add(new, orders=Increment(1))
