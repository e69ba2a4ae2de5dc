"""Fulfillment: an order's stock and payment, across three aggregates, by a process manager.

``OrderPlaced`` starts a ``Fulfillment`` instance (stream ``fulfillment-{order_id}``) that
reserves the stock; once reserved, it charges the payment and gives the payment service
``PAYMENT_TIMEOUT`` seconds to answer. Paid: done. No stock: the order is cancelled. Declined, or
no answer in time (the ``PaymentTimedOut`` deadline): the stock is released and the order
cancelled (the compensation path). Commands go to ``inventory:command-{id}``,
``payment:command-{id}`` and ``order:command-{id}``; the desks of ``handlers.desks`` answer them.
"""

from __future__ import annotations

import hashlib
import os
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from domain import domain
from domain.order import OrderPlaced
from worker import BaseAggregate, BaseEvent, ProcessManager, apply, handle

if TYPE_CHECKING:
    from worker import Context

PAYMENT_TIMEOUT = float(os.environ.get("FULFILLMENT_PAYMENT_TIMEOUT", "30"))
"""Seconds the payment service has to answer a charge (``FULFILLMENT_PAYMENT_TIMEOUT``)."""

Verdict = Literal["paid", "declined", "silent", "no stock"]


def verdict(order_id: str) -> Verdict:
    """What the example's simulated services make of an order, from its id alone: about 10%
    find no stock; of the rest, about 70% are paid, 15% declined, 15% never answered."""
    roll = int(hashlib.sha256(order_id.encode()).hexdigest()[:8], 16) % 100
    if roll < 10:
        return "no stock"
    if roll < 73:
        return "paid"
    return "declined" if roll < 86 else "silent"


# -- the stock and payment aggregates (their desks write their events) ----------------------


@domain.aggregate(is_event_sourced=True, stream_category="inventory")
class Reservation(BaseAggregate):
    """The stock held for one order, in ``inventory-{order_id}``."""

    status: Literal["none", "reserved", "unavailable", "released"] = "none"

    @apply
    def when_reserved(self, event: StockReserved) -> None:
        self.status = "reserved"

    @apply
    def when_unavailable(self, event: StockUnavailable) -> None:
        self.status = "unavailable"

    @apply
    def when_released(self, event: StockReleased) -> None:
        self.status = "released"


@domain.event(part_of=Reservation)
class StockReserved(BaseEvent):
    order_id: str


@domain.event(part_of=Reservation)
class StockUnavailable(BaseEvent):
    order_id: str


@domain.event(part_of=Reservation)
class StockReleased(BaseEvent):
    order_id: str


@domain.aggregate(is_event_sourced=True, stream_category="payment")
class Payment(BaseAggregate):
    """One order's payment, in ``payment-{order_id}``."""

    status: Literal["none", "received", "declined"] = "none"

    @apply
    def when_received(self, event: PaymentReceived) -> None:
        self.status = "received"

    @apply
    def when_declined(self, event: PaymentDeclined) -> None:
        self.status = "declined"


@domain.event(part_of=Payment)
class PaymentReceived(BaseEvent):
    order_id: str
    amount: Decimal


@domain.event(part_of=Payment)
class PaymentDeclined(BaseEvent):
    order_id: str


# -- commands, and the deadline's message --------------------------------------------------


@domain.command(part_of=Reservation)
class ReserveStock(BaseEvent):
    order_id: str
    items: int


@domain.command(part_of=Reservation)
class ReleaseStock(BaseEvent):
    order_id: str


@domain.command(part_of=Payment)
class ChargePayment(BaseEvent):
    order_id: str
    amount: Decimal


@domain.command(category="order")
class CancelOrder(BaseEvent):
    order_id: str
    reason: str


@domain.event
class PaymentTimedOut(BaseEvent):
    """The deadline's message: the payment service did not answer in time."""

    order_id: str


# -- the process manager ------------------------------------------------------------------


@domain.process_manager(name="fulfillment")
class Fulfillment(ProcessManager):
    """One order's way from placed to paid, or to cancelled."""

    order_id: str = ""
    amount: Decimal = Decimal(0)
    status: Literal["reserving", "paying", "paid", "cancelled"] = "reserving"
    reason: str | None = None

    @handle(OrderPlaced, correlate="order_id", start=True)
    async def placed(self, event: OrderPlaced, ctx: Context) -> None:
        self.order_id = event.order_id
        self.amount = sum((i.price * i.quantity for i in event.items), Decimal(0))
        items = sum(i.quantity for i in event.items)
        await ctx.write(
            f"inventory:command-{self.order_id}", ReserveStock(order_id=self.order_id, items=items)
        )

    @handle(StockReserved, correlate="order_id")
    async def reserved(self, event: StockReserved, ctx: Context) -> None:
        self.status = "paying"
        charge = ChargePayment(order_id=self.order_id, amount=self.amount)
        await ctx.write(f"payment:command-{self.order_id}", charge)
        ctx.schedule(after=PAYMENT_TIMEOUT, message=PaymentTimedOut(order_id=self.order_id))

    @handle(PaymentReceived, correlate="order_id", end=True)
    def paid(self, event: PaymentReceived, ctx: Context) -> None:
        self.status = "paid"
        ctx.cancel(PaymentTimedOut)

    @handle(StockUnavailable, correlate="order_id", end=True)
    async def no_stock(self, event: StockUnavailable, ctx: Context) -> None:
        await self._cancel(ctx, "out of stock")

    @handle(PaymentDeclined, PaymentTimedOut, correlate="order_id", end=True)
    async def unpaid(self, event: PaymentDeclined | PaymentTimedOut, ctx: Context) -> None:
        """Compensation: give the stock back, cancel the order."""
        await ctx.write(f"inventory:command-{self.order_id}", ReleaseStock(order_id=self.order_id))
        reason = "payment declined" if isinstance(event, PaymentDeclined) else "payment timed out"
        await self._cancel(ctx, reason)

    async def _cancel(self, ctx: Context, reason: str) -> None:
        self.status, self.reason = "cancelled", reason
        await ctx.write(
            f"order:command-{self.order_id}", CancelOrder(order_id=self.order_id, reason=reason)
        )
