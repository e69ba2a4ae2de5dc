"""On ``OrderShipped``, ask the notification service to tell the customer (exactly once)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain import Order, OrderShipped, domain
from worker import BaseEvent, handle

if TYPE_CHECKING:
    from worker import Context


@domain.event(category="notification:command")
class SendShipmentNotification(BaseEvent):
    """A command to the notification service."""

    order_id: str
    tracking: str


@domain.event_handler(name="shipment_notifier", aggregates=[Order])
class ShipmentNotifier:
    """Writes ``SendShipmentNotification`` to ``notification:command-{order_id}``.

    The command is written in the batch's transaction, with causation and correlation metadata
    following the ``OrderShipped`` message, so it is emitted exactly once.
    """

    @handle(OrderShipped)
    async def shipped(self, event: OrderShipped, ctx: Context) -> None:
        command = SendShipmentNotification(order_id=event.order_id, tracking=event.tracking)
        await ctx.write(f"notification:command-{event.order_id}", command)
