"""The seed's event-sourced Order: methods raise events, ``@apply`` methods change state."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal  # noqa: TC003  (pydantic resolves field types at runtime)
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from domain import domain
from worker import BaseAggregate, BaseEntity, BaseEvent, apply

if TYPE_CHECKING:
    from collections.abc import Iterable

Status = Literal["PENDING", "CONFIRMED", "SHIPPED", "CANCELLED"]


class OrderStateError(ValueError):
    """A business method was called in a state that does not allow it."""


def _now() -> datetime:
    return datetime.now(UTC)


@domain.entity
class OrderItem(BaseEntity):
    """One line of an order (the seed's ``HasMany("OrderItem")``)."""

    product_id: str = Field(min_length=1, max_length=50)
    quantity: int = Field(gt=0)
    price: Decimal = Field(ge=0, max_digits=10, decimal_places=2)


@domain.aggregate(is_event_sourced=True, stream_category="order")
class Order(BaseAggregate):
    """An order, stored as its events in ``order-{id}``."""

    customer_name: str = Field(max_length=150)
    status: Status = "PENDING"
    items: list[OrderItem] = Field(default_factory=list)
    confirmed_at: datetime | None = None
    tracking: str | None = Field(default=None, max_length=50)

    @classmethod
    def place(cls, customer_name: str, items: Iterable[OrderItem] = ()) -> Order:
        """A new order: raises ``OrderPlaced``."""
        order = cls(customer_name=customer_name)
        order.raise_(OrderPlaced(order_id=order.id, customer_name=customer_name, items=list(items)))
        return order

    def confirm(self) -> None:
        """Confirm a pending order: raises ``OrderConfirmed``."""
        if self.status != "PENDING":
            raise OrderStateError(f"order {self.id} is {self.status}; only PENDING can confirm")
        self.raise_(OrderConfirmed(order_id=self.id, confirmed_at=_now()))

    def ship(self, tracking: str) -> None:
        """Ship a confirmed order: raises ``OrderShipped``."""
        if self.status != "CONFIRMED":
            raise OrderStateError(f"order {self.id} is {self.status}; only CONFIRMED can ship")
        self.raise_(OrderShipped(order_id=self.id, tracking=tracking))

    def cancel(self, reason: str) -> None:
        """Cancel an order not shipped yet: raises ``OrderCancelled``."""
        if self.status in ("SHIPPED", "CANCELLED"):
            raise OrderStateError(f"order {self.id} is {self.status}; it cannot be cancelled")
        self.raise_(OrderCancelled(order_id=self.id, reason=reason))

    @apply
    def when_placed(self, event: OrderPlaced) -> None:
        self.customer_name = event.customer_name
        self.items = [item.model_copy(deep=True) for item in event.items]
        self.status = "PENDING"

    @apply
    def when_confirmed(self, event: OrderConfirmed) -> None:
        self.status = "CONFIRMED"
        self.confirmed_at = event.confirmed_at

    @apply
    def when_shipped(self, event: OrderShipped) -> None:
        self.status = "SHIPPED"
        self.tracking = event.tracking

    @apply
    def when_cancelled(self, event: OrderCancelled) -> None:
        self.status = "CANCELLED"


@domain.event(part_of=Order)
class OrderPlaced(BaseEvent):
    """A customer placed an order."""

    order_id: str
    customer_name: str = Field(max_length=150)
    items: list[OrderItem] = Field(default_factory=list)


@domain.event(part_of=Order)
class OrderConfirmed(BaseEvent):
    """The order was confirmed."""

    order_id: str
    confirmed_at: datetime


@domain.event(part_of=Order)
class OrderShipped(BaseEvent):
    """The order left the warehouse."""

    order_id: str
    tracking: str = Field(min_length=1, max_length=50)


@domain.event(part_of=Order)
class OrderCancelled(BaseEvent):
    """The order was cancelled (by the fulfillment process: no stock, or no payment)."""

    order_id: str
    reason: str = Field(max_length=200)
