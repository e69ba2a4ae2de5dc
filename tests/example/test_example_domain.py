"""The example domain tested with the public testing kit alone (``worker.testing``), in memory:
the Order aggregate, the order_summary and book_catalog projectors, the shipment notifier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain import (
    Book,
    BookFactEvent,
    Order,
    OrderConfirmed,
    OrderItem,
    OrderPlaced,
    OrderShipped,
    OrderStateError,
    domain,
)
from domain.fulfillment import (
    PAYMENT_TIMEOUT,
    ChargePayment,
    Fulfillment,
    PaymentReceived,
    ReserveStock,
    StockReserved,
    StockUnavailable,
)
from handlers import InventoryDesk, PaymentDesk, SendShipmentNotification, ShipmentNotifier
from projections.book_catalog import BookCatalog, BookCatalogProjector
from projections.order_summary import OrderSummary, OrderSummaryProjector
from worker.testing import given, given_process, in_stream, project

ITEM = OrderItem(product_id="p1", quantity=2, price=Decimal("4.50"))
PLACED = OrderPlaced(order_id="o1", customer_name="Ada", items=[ITEM])
CONFIRMED = OrderConfirmed(order_id="o1", confirmed_at=datetime(2026, 1, 2, tzinfo=UTC))


# -- the Order aggregate --------------------------------------------------------------------


def test_placing_an_order_raises_order_placed() -> None:
    """Order.place raises OrderPlaced with the customer and items; the order is PENDING."""
    given(aggregate=Order).when(lambda cls: cls.place("Ada", [ITEM])).then(OrderPlaced).then_state(
        customer_name="Ada", status="PENDING", items=[ITEM]
    )


def test_a_placed_order_confirms_then_ships() -> None:
    """Confirm, then ship with a tracking number: one event each, the status follows."""
    given(PLACED).when(lambda order: order.confirm()).then(OrderConfirmed).then_state(
        status="CONFIRMED"
    )
    given(PLACED, CONFIRMED, id="o1").when(lambda order: order.ship("T-9")).then(
        OrderShipped(order_id="o1", tracking="T-9")
    ).then_state(status="SHIPPED", tracking="T-9")


def test_a_pending_order_cannot_ship() -> None:
    """Shipping before confirming is refused and raises no event."""
    given(PLACED).when(lambda order: order.ship("T-9")).then_raises(
        OrderStateError, match="only CONFIRMED can ship"
    )


# -- projectors and the handler -------------------------------------------------------------


@pytest.mark.anyio
async def test_order_summary_follows_an_order_through_its_life() -> None:
    """Placed, confirmed and shipped: one row with its items, total, status and event count."""
    shipped = OrderShipped(order_id="o1", tracking="T-9")
    result = await project(
        OrderSummaryProjector, in_stream("order-o1", PLACED, CONFIRMED, shipped), domain=domain
    )
    (row,) = result.rows(OrderSummary)
    assert (row.order_id, row.customer_name, row.status) == ("o1", "Ada", "SHIPPED")
    assert (row.item_count, row.total, row.events, row.tracking) == (2, Decimal("9.00"), 3, "T-9")
    assert result.positions == {"order_summary:order": 3}


@pytest.mark.anyio
async def test_book_catalog_keeps_the_newest_version_of_each_book() -> None:
    """Two saves of a book: the catalog holds the second (version 2)."""
    first = BookFactEvent(id="b1", title="Dune", author="Herbert", price=9.5, published=False)
    second = first.model_copy(update={"price": 11.0, "published": True})
    result = await project(
        BookCatalogProjector, in_stream("book:fact-b1", first, second), domain=domain
    )
    assert result.rows(BookCatalog) == [
        BookCatalog(
            book_id="b1",
            title="Dune",
            author="Herbert",
            isbn=None,
            price=11.0,
            published=True,
            version=2,
        )
    ]
    assert Book.FactEvent is BookFactEvent


@pytest.mark.anyio
async def test_the_shipment_notifier_asks_once_per_shipped_order() -> None:
    """An OrderShipped makes one SendShipmentNotification to notification:command-{id},
    following the shipped message; other events make none."""
    shipped = OrderShipped(order_id="o1", tracking="T-9")
    result = await project(
        ShipmentNotifier, in_stream("order-o1", PLACED, CONFIRMED, shipped), domain=domain
    )
    (sent,) = result.emitted
    assert sent.stream_name == "notification:command-o1"
    assert sent.type == SendShipmentNotification.type_name()
    assert sent.data == {"order_id": "o1", "tracking": "T-9"}
    assert sent.metadata is not None
    assert sent.metadata["causationMessageStreamName"] == "order-o1"


# -- the fulfillment process manager ---------------------------------------------------------


@pytest.mark.anyio
async def test_fulfillment_reserves_then_charges_with_a_payment_deadline() -> None:
    """Placed: stock reserved; reserved: payment charged and a timeout scheduled."""
    run = await given_process(
        Fulfillment,
        in_stream("order-o1", PLACED),
        in_stream("inventory-o1", StockReserved(order_id="o1")),
    )
    assert [m.type for m in run.commands] == ["ReserveStock", "ChargePayment"]
    assert run.instance("o1").status == "paying"  # type: ignore[union-attr]
    assert run.instance("o1").amount == Decimal("9.00")  # type: ignore[union-attr]
    (deadline,) = run.deadlines.pending()
    assert deadline.type == "PaymentTimedOut"
    assert deadline.due_at == run.clock() + timedelta(seconds=PAYMENT_TIMEOUT)


@pytest.mark.anyio
async def test_fulfillment_ends_paid_and_its_timeout_is_cancelled() -> None:
    """Paid in time: the instance ends paid; the timeout never fires."""
    run = await given_process(
        Fulfillment,
        in_stream("order-o1", PLACED),
        in_stream("inventory-o1", StockReserved(order_id="o1")),
        in_stream("payment-o1", PaymentReceived(order_id="o1", amount=Decimal("9.00"))),
    )
    await run.advance(PAYMENT_TIMEOUT * 2)
    instance = run.instance("o1")
    assert instance is not None and instance.status == "paid" and instance.ended
    assert run.deadlines.fired() == []


@pytest.mark.anyio
async def test_fulfillment_cancels_an_order_whose_payment_times_out() -> None:
    """No answer from the payment service: the stock is released and the order cancelled."""
    run = await given_process(
        Fulfillment,
        in_stream("order-o1", PLACED),
        in_stream("inventory-o1", StockReserved(order_id="o1")),
    )
    await run.advance(PAYMENT_TIMEOUT)
    instance = run.instance("o1")
    assert instance is not None and instance.status == "cancelled" and instance.ended
    assert instance.reason == "payment timed out"
    assert [m.type for m in run.commands] == [
        "ReserveStock",
        "ChargePayment",
        "ReleaseStock",
        "CancelOrder",
    ]


@pytest.mark.anyio
async def test_fulfillment_cancels_an_order_without_stock() -> None:
    """No stock: the order is cancelled at once, nothing charged, no deadline."""
    run = await given_process(
        Fulfillment,
        in_stream("order-o1", PLACED),
        in_stream("inventory-o1", StockUnavailable(order_id="o1")),
    )
    assert run.instance("o1").reason == "out of stock"  # type: ignore[union-attr]
    assert [m.type for m in run.commands] == ["ReserveStock", "CancelOrder"]
    assert run.deadlines.pending() == []


@pytest.mark.anyio
async def test_the_desks_answer_as_the_simulated_services_decide() -> None:
    """o0 finds no stock; o1 is paid; o4 declined; o20 never answered."""
    desks = await project(
        InventoryDesk,
        in_stream("inventory:command-o0", ReserveStock(order_id="o0", items=1)),
        domain=domain,
    )
    assert [m.type for m in desks.emitted] == ["StockUnavailable"]
    charges = [
        (f"payment:command-{o}", ChargePayment(order_id=o, amount=Decimal(1)))
        for o in ("o1", "o4", "o20")
    ]
    paid = await project(PaymentDesk, charges, domain=domain)
    assert [(m.stream_name, m.type) for m in paid.emitted] == [
        ("payment-o1", "PaymentReceived"),
        ("payment-o4", "PaymentDeclined"),
    ]
