"""The event-sourced repository against the genuine MessageDB: the seed's Order walk-through."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from domain import Order, OrderItem, OrderPlaced
from domain import domain as shop
from worker import (
    AggregateNotFoundError,
    BaseAggregate,
    Domain,
    MessageStore,
    MissingApplyError,
    NewMessage,
    VersionConflictError,
)
from worker.errors import RegistrationError
from worker.store.metadata import (
    CAUSATION_GLOBAL_POSITION,
    CAUSATION_POSITION,
    CAUSATION_STREAM_NAME,
    CORRELATION_STREAM_NAME,
)

pytestmark = pytest.mark.anyio


def items() -> list[OrderItem]:
    return [
        OrderItem(product_id="book-1", quantity=2, price=Decimal("9.99")),
        OrderItem(product_id="book-2", quantity=1, price=Decimal("25.00")),
    ]


async def test_seed_walkthrough_place_confirm_ship(store: MessageStore) -> None:
    """Each step's events land at position version - 1; a load replays to the same state."""
    orders = shop.repository_for(Order, store)
    lines = items()
    order = Order.place("Alice", lines)
    await orders.add(order)
    assert (order.version, order.stored_version, order.pending_events) == (1, 1, ())

    loaded = await orders.get(order.id)
    assert (loaded.status, loaded.version) == ("PENDING", 1)
    loaded.confirm()
    await orders.add(loaded)
    assert (loaded.status, loaded.version) == ("CONFIRMED", 2)

    loaded = await orders.get(order.id)
    loaded.ship("ABC123")
    await orders.add(loaded)
    assert (loaded.status, loaded.version) == ("SHIPPED", 3)

    final = await orders.get(order.id)
    assert final.model_dump() == loaded.model_dump()
    assert (final.version, final.tracking, final.items) == (3, "ABC123", lines)
    messages = await store.read_stream(f"order-{order.id}")
    assert [(m.position, m.type) for m in messages] == [
        (0, "OrderPlaced"),
        (1, "OrderConfirmed"),
        (2, "OrderShipped"),
    ]


async def test_several_pending_events_are_one_atomic_write(store: MessageStore) -> None:
    """place+confirm+ship saved at once: three messages, version 3, one load gives SHIPPED."""
    orders = shop.repository_for(Order, store)
    order = Order.place("Bob")
    order.confirm()
    order.ship("XYZ")
    await orders.add(order)
    assert await store.stream_version(f"order-{order.id}") == 2
    assert (await orders.get(order.id)).status == "SHIPPED"


async def test_concurrent_modification_conflicts_and_writes_nothing(store: MessageStore) -> None:
    """Two loads, both modified: the second save fails; the stream holds only the first's."""
    orders = shop.repository_for(Order, store)
    order = Order.place("Alice")
    await orders.add(order)
    first = await orders.get(order.id)
    second = await orders.get(order.id)
    first.confirm()
    first.ship("FIRST")
    second.confirm()
    second.ship("SECOND")

    await orders.add(first)
    with pytest.raises(VersionConflictError) as caught:
        await orders.add(second)

    assert (caught.value.id, caught.value.expected) == (order.id, 1)
    messages = await store.read_stream(f"order-{order.id}")
    assert [m.type for m in messages] == ["OrderPlaced", "OrderConfirmed", "OrderShipped"]
    assert messages[-1].data["tracking"] == "FIRST"
    assert len(second.pending_events) == 2


async def test_unknown_id_is_not_found(store: MessageStore) -> None:
    """Loading an id with no events raises AggregateNotFoundError."""
    with pytest.raises(AggregateNotFoundError, match="nosuch"):
        await shop.repository_for(Order, store).get("nosuch")


async def test_new_aggregate_with_an_existing_id_conflicts(store: MessageStore) -> None:
    """A new aggregate saves with expected version -1: an existing stream is a conflict."""
    orders = shop.repository_for(Order, store)
    order = Order.place("Alice")
    await orders.add(order)
    twin = Order.place("Mallory")
    twin.id = order.id
    twin.raise_(OrderPlaced(order_id=order.id, customer_name="Mallory"))
    with pytest.raises(VersionConflictError):
        await orders.add(twin)
    assert (await orders.get(order.id)).customer_name == "Alice"


async def test_events_follow_their_causing_message(store: MessageStore) -> None:
    """With cause=, every event carries Eventide causation keys and the correlation."""
    await store.write(
        "checkout-7", NewMessage("PlaceOrder", {"n": 1}, {CORRELATION_STREAM_NAME: "cart-7"})
    )
    [command] = await store.read_stream("checkout-7")
    order = Order.place("Alice")
    order.confirm()
    await shop.repository_for(Order, store).add(order, cause=command)

    for message in await store.read_stream(f"order-{order.id}"):
        assert message.metadata == {
            CAUSATION_STREAM_NAME: "checkout-7",
            CAUSATION_POSITION: 0,
            CAUSATION_GLOBAL_POSITION: command.global_position,
            CORRELATION_STREAM_NAME: "cart-7",
        }
    assert [m.stream_name for m in await store.read_category("order", correlation="cart")] == [
        f"order-{order.id}",
        f"order-{order.id}",
    ]


async def test_validation_errors_raise_before_anything_is_written(store: MessageStore) -> None:
    """Too long or missing fields fail in the model; only valid events ever reach the store."""
    orders = shop.repository_for(Order, store)
    with pytest.raises(ValidationError, match="at most 150 characters"):
        Order.place("x" * 151)
    with pytest.raises(ValidationError, match="customer_name"):
        OrderPlaced(order_id="o-1")  # type: ignore[call-arg]
    assert await store.category_head("order") is None

    order = Order.place("Alice")
    order.confirm()
    with pytest.raises(ValidationError, match="at most 50 characters"):
        order.ship("T" * 51)
    await orders.add(order)
    assert [m.type for m in await store.read_category("order")] == [
        "OrderPlaced",
        "OrderConfirmed",
    ]


async def test_a_stream_type_the_aggregate_cannot_apply_is_an_error(store: MessageStore) -> None:
    """Replaying an unknown event type fails loudly instead of returning a wrong state."""
    orders = shop.repository_for(Order, store)
    order = Order.place("Alice")
    await orders.add(order)
    await store.write(f"order-{order.id}", NewMessage("OrderTeleported", {"to": "Mars"}))
    with pytest.raises(MissingApplyError, match="OrderTeleported"):
        await orders.get(order.id)


async def test_replay_that_leaves_a_required_field_unset_is_an_error(store: MessageStore) -> None:
    """A stream whose events never set a required field cannot load as a valid aggregate."""
    await store.write(
        "order-headless",
        NewMessage(
            "OrderConfirmed", {"order_id": "headless", "confirmed_at": "2024-01-15T00:00:00Z"}
        ),
    )
    with pytest.raises(MissingApplyError, match="customer_name"):
        await shop.repository_for(Order, store).get("headless")


async def test_add_joins_the_callers_transaction(store: MessageStore, pool: Any) -> None:
    """With conn=, the events commit or roll back with the caller's own transaction."""
    orders = shop.repository_for(Order, store)
    order = Order.place("Alice")

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with pool.acquire() as conn, conn.transaction():
            await orders.add(order, conn=conn)
            assert await store.stream_version(f"order-{order.id}", conn=conn) == 0
            raise Abort
    assert await store.stream_version(f"order-{order.id}") is None


async def test_repository_for_an_unregistered_class_is_refused(store: MessageStore) -> None:
    """Only aggregates registered on the domain get a repository."""
    with pytest.raises(RegistrationError, match="no aggregate of domain 'other'"):
        Domain("other").repository_for(Order, store)
    with pytest.raises(RegistrationError):
        shop.repository_for(BaseAggregate, store)
