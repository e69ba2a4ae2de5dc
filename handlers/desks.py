"""The services the fulfillment process talks to, simulated: each answers its commands by
writing its aggregate's events (``domain.fulfillment.verdict`` decides, from the order id)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain import domain
from domain.fulfillment import (
    CancelOrder,
    ChargePayment,
    PaymentDeclined,
    PaymentReceived,
    ReleaseStock,
    ReserveStock,
    StockReleased,
    StockReserved,
    StockUnavailable,
    verdict,
)
from domain.order import OrderCancelled
from worker import handle

if TYPE_CHECKING:
    from worker import Context


@domain.event_handler(name="inventory_desk")
class InventoryDesk:
    """Reserves stock (or finds none) and releases it."""

    @handle(ReserveStock)
    async def reserve(self, command: ReserveStock, ctx: Context) -> None:
        found = verdict(command.order_id) != "no stock"
        event = (StockReserved if found else StockUnavailable)(order_id=command.order_id)
        await ctx.write(f"inventory-{command.order_id}", event)

    @handle(ReleaseStock)
    async def release(self, command: ReleaseStock, ctx: Context) -> None:
        await ctx.write(f"inventory-{command.order_id}", StockReleased(order_id=command.order_id))


@domain.event_handler(name="payment_desk")
class PaymentDesk:
    """Charges a payment: received, declined, or (for some) never answered."""

    @handle(ChargePayment)
    async def charge(self, command: ChargePayment, ctx: Context) -> None:
        answer = verdict(command.order_id)
        if answer == "paid":
            paid = PaymentReceived(order_id=command.order_id, amount=command.amount)
            await ctx.write(f"payment-{command.order_id}", paid)
        elif answer == "declined":
            await ctx.write(
                f"payment-{command.order_id}", PaymentDeclined(order_id=command.order_id)
            )


@domain.event_handler(name="order_desk")
class OrderDesk:
    """Cancels orders the fulfillment process gave up on."""

    @handle(CancelOrder)
    async def cancel(self, command: CancelOrder, ctx: Context) -> None:
        cancelled = OrderCancelled(order_id=command.order_id, reason=command.reason)
        await ctx.write(f"order-{command.order_id}", cancelled)
