"""The seed's shop in this library's style, sharing one event store with a Protean 0.18 app.

Every class is declared once, as any application of this library declares it: no ``aliases=``,
no categories, no type names. ``conventions="protean"`` alone makes the names, ids and metadata
Protean's (``protean_app.py`` is the same shop written with Protean).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from worker import BaseAggregate, BaseEvent, Domain, Increment, ReadModel, apply, handle, on

if TYPE_CHECKING:
    from worker import Context

shop = Domain("Shop", conventions="protean", snapshot_threshold=2)


@shop.aggregate(is_event_sourced=True, stream_category="order")
class Order(BaseAggregate):
    """The seed's event-sourced order (``String``/``HasMany`` fields become pydantic fields)."""

    customer_name: str = Field(max_length=150)
    status: str = Field(default="PENDING", max_length=20)
    tracking: str | None = Field(default=None, max_length=50)

    @classmethod
    def place(cls, customer_name: str) -> Order:
        order = cls(customer_name=customer_name)
        order.raise_(OrderPlaced(order_id=order.id, customer_name=customer_name))
        return order

    def confirm(self) -> None:
        self.raise_(OrderConfirmed(order_id=self.id))

    def ship(self, tracking: str) -> None:
        self.raise_(OrderShipped(order_id=self.id, tracking=tracking))

    @apply
    def when_placed(self, event: OrderPlaced) -> None:
        self.customer_name = event.customer_name
        self.status = "PENDING"

    @apply
    def when_confirmed(self, event: OrderConfirmed) -> None:
        self.status = "CONFIRMED"

    @apply
    def when_shipped(self, event: OrderShipped) -> None:
        self.status = "SHIPPED"
        self.tracking = event.tracking


@shop.event(part_of=Order)
class OrderPlaced(BaseEvent):
    order_id: str
    customer_name: str = Field(max_length=150)


@shop.event(part_of=Order)
class OrderConfirmed(BaseEvent):
    order_id: str


@shop.event(part_of=Order)
class OrderShipped(BaseEvent):
    order_id: str
    tracking: str


@shop.command(part_of=Order)
class ShipOrder(BaseEvent):
    """A command to the order's aggregate; a Protean command handler ships the order."""

    order_id: str
    tracking: str


@shop.aggregate(fact_events=True)
class Book(BaseAggregate):
    """The seed's fact-event book: state in a row, a ``BookFactEvent`` per save."""

    title: str = Field(max_length=200)
    author: str = Field(max_length=150)

    def publish(self) -> None:
        self.raise_(BookPublished(book_id=self.id, title=self.title))


@shop.event(part_of=Book)
class BookPublished(BaseEvent):
    book_id: str
    title: str


class OrderRow(ReadModel):
    __table__ = "interop_orders"
    __key__ = "order_id"
    order_id: str
    customer_name: str
    status: str
    tracking: str | None = None
    events: int = 1


class BookRow(ReadModel):
    __table__ = "interop_books"
    __key__ = "book_id"
    book_id: str
    title: str
    author: str
    saves: int = 1


@shop.projector(name="interop_orders", read_models=[OrderRow], version=1)
class Orders:
    @on(OrderPlaced)
    def placed(self, event: OrderPlaced, ctx: Context) -> None:
        row = OrderRow(order_id=event.order_id, customer_name=event.customer_name, status="PENDING")
        ctx.table(OrderRow).put(row)

    @on(OrderConfirmed)
    def confirmed(self, event: OrderConfirmed, ctx: Context) -> None:
        ctx.table(OrderRow).update(event.order_id, status="CONFIRMED", events=Increment(1))

    @on(OrderShipped)
    def shipped(self, event: OrderShipped, ctx: Context) -> None:
        ctx.table(OrderRow).update(
            event.order_id, status="SHIPPED", tracking=event.tracking, events=Increment(1)
        )


@shop.projector(name="interop_books", read_models=[BookRow], version=1)
class Books:
    @on(Book.FactEvent)
    async def saved(self, event: BaseEvent, ctx: Context) -> None:
        fact = event.model_dump()
        known = await ctx.table(BookRow).get(fact["id"])
        saves = 1 if known is None else known.saves + 1
        row = BookRow(book_id=fact["id"], title=fact["title"], author=fact["author"], saves=saves)
        ctx.table(BookRow).put(row)


@shop.event_handler(name="shipping")
class Shipping:
    """Asks the order's aggregate to ship each confirmed order: a command this library writes,
    following the event, for a Protean command handler."""

    @handle(OrderConfirmed)
    async def confirmed(self, event: OrderConfirmed, ctx: Context) -> None:
        stream = f"{Order.__stream_category__}:command-{event.order_id}"
        await ctx.write(stream, ShipOrder(order_id=event.order_id, tracking=tracking(event)))


def tracking(event: OrderConfirmed) -> str:
    return f"T-{event.order_id[:8]}"
