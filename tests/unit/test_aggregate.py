"""Aggregates in memory: raise_/@apply, versions, registration rules, pydantic validation."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field, ValidationError

from domain import Book, BookFactEvent, Order, OrderItem, OrderPlaced, OrderStateError
from domain import domain as shop
from worker import BaseAggregate, BaseEvent, Domain, MissingApplyError, apply
from worker.errors import RegistrationError


def test_versions_follow_the_seed_walkthrough() -> None:
    """0 on creation, 1 after OrderPlaced, 2 after OrderConfirmed, 3 after OrderShipped."""
    assert Order(customer_name="Alice").version == 0
    order = Order.place("Alice", [OrderItem(product_id="book-1", quantity=2, price="9.99")])
    assert (order.version, order.status) == (1, "PENDING")
    order.confirm()
    assert (order.version, order.status) == (2, "CONFIRMED")
    order.ship("ABC123")
    assert (order.version, order.status, order.tracking) == (3, "SHIPPED", "ABC123")
    assert [type(e).__name__ for e in order.pending_events] == [
        "OrderPlaced",
        "OrderConfirmed",
        "OrderShipped",
    ]
    assert order.stored_version == 0


def test_business_rules_raise_before_any_event() -> None:
    """Shipping a pending order is refused and raises no event."""
    order = Order.place("Alice")
    with pytest.raises(OrderStateError):
        order.ship("ABC123")
    assert order.version == 1 and len(order.pending_events) == 1


def test_validation_comes_from_pydantic() -> None:
    """Too long and missing required fields raise ValidationError, on models and events."""
    with pytest.raises(ValidationError, match="at most 150 characters"):
        Order.place("x" * 151)
    with pytest.raises(ValidationError, match="customer_name"):
        Order()  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="greater than 0"):
        OrderItem(product_id="p", quantity=0, price="1")
    with pytest.raises(ValidationError, match="order_id"):
        OrderPlaced(customer_name="Alice")  # type: ignore[call-arg]


def test_assignment_is_validated() -> None:
    """State is validated on assignment too (validate_assignment)."""
    book = Book(title="Dune", author="Frank Herbert")
    with pytest.raises(ValidationError, match="at most 200 characters"):
        book.title = "x" * 201


def test_stream_category_defaults_to_snake_case_name() -> None:
    """Without stream_category, the category is the snake-case class name."""
    local = Domain("t")

    @local.aggregate(is_event_sourced=True)
    class GiftCard(BaseAggregate):
        pass

    assert GiftCard.__stream_category__ == "gift_card"
    assert Order.__stream_category__ == "order"
    assert Book.__stream_category__ == "book"


def test_apply_method_is_chosen_by_annotation_including_unions() -> None:
    """Each @apply method handles the event types of its annotation; a union handles several."""
    local = Domain("t")

    @local.aggregate(is_event_sourced=True)
    class Lamp(BaseAggregate):
        on: bool = False
        switches: int = 0

        @apply
        def when_on(self, event: SwitchedOn) -> None:
            self.on = True

        @apply
        def when_any(self, event: SwitchedOff | Toggled) -> None:
            self.on = not self.on if isinstance(event, Toggled) else False

    class SwitchedOn(BaseEvent):
        pass

    class SwitchedOff(BaseEvent):
        pass

    class Toggled(BaseEvent):
        pass

    for event_cls in (SwitchedOn, SwitchedOff, Toggled):
        local.register_event(event_cls, part_of=Lamp)
    lamp = Lamp()
    lamp.raise_(SwitchedOn())
    lamp.raise_(Toggled())
    assert lamp.on is False
    lamp.raise_(Toggled())
    assert lamp.on is True
    lamp.raise_(SwitchedOff())
    assert (lamp.on, lamp.version) == (False, 4)


def test_raising_an_event_without_apply_is_a_clear_error() -> None:
    """An event-sourced aggregate raising a type it cannot apply fails and queues nothing."""
    local = Domain("t")

    @local.aggregate(is_event_sourced=True)
    class Counter(BaseAggregate):
        pass

    class Bumped(BaseEvent):
        pass

    counter = Counter()
    with pytest.raises(MissingApplyError, match=r"no @apply method for .*Bumped"):
        counter.raise_(Bumped())
    assert counter.version == 0 and counter.pending_events == ()


def test_registered_event_without_apply_fails_on_first_use() -> None:
    """An event declared part_of an event-sourced aggregate must have an @apply method."""
    local = Domain("t")

    @local.aggregate(is_event_sourced=True)
    class Tank(BaseAggregate):
        level: int = 0

        @apply
        def when_filled(self, event: Filled) -> None:
            self.level += 1

    @local.event(part_of=Tank)
    class Filled(BaseEvent):
        pass

    @local.event(part_of=Tank)
    class Drained(BaseEvent):
        pass

    with pytest.raises(MissingApplyError, match=r"no @apply method for .*Drained"):
        Tank().raise_(Filled())


def test_apply_without_annotation_is_rejected() -> None:
    """An @apply method must annotate its event parameter."""
    local = Domain("t")

    @local.aggregate(is_event_sourced=True)
    class Thing(BaseAggregate):
        @apply
        def when_any(self, event) -> None:  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(RegistrationError, match="must annotate"):
        Thing.appliers()


def test_state_aggregate_raise_only_queues() -> None:
    """A non-event-sourced aggregate changes state directly; raise_ queues, version unchanged."""
    book = Book(title="Dune", author="Frank Herbert")
    book.publish()
    assert book.published is True
    assert book.version == 0
    assert [type(e).__name__ for e in book.pending_events] == ["BookPublished"]


def test_fact_event_class_is_generated_and_registered() -> None:
    """fact_events=True makes Book.FactEvent (BookFactEvent) in category book:fact."""
    assert Book.FactEvent is BookFactEvent
    assert BookFactEvent.__name__ == "BookFactEvent"
    assert BookFactEvent.type_name() == "BookFactEvent"
    assert BookFactEvent.__category__ == "book:fact"
    assert shop.event_class("BookFactEvent") is BookFactEvent
    assert set(BookFactEvent.model_fields) == set(Book.model_fields)
    with pytest.raises(ValidationError, match="at most 200 characters"):
        BookFactEvent(title="x" * 201, author="a")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"is_event_sourced": True, "fact_events": True}, "not event-sourced"),
        ({"snapshot_threshold": 5}, "event-sourced"),
        ({"is_event_sourced": True, "snapshot_threshold": 0}, "at least 1"),
        ({"stream_category": "bad-name"}, "contains '-'"),
    ],
)
def test_inconsistent_aggregate_options_are_rejected(options: dict[str, Any], message: str) -> None:
    """Contradictory or invalid decorator options fail at class definition."""
    local = Domain("t")

    class Thing(BaseAggregate):
        name: str = Field(default="", max_length=5)

    with pytest.raises((RegistrationError, ValueError), match=message):
        local.aggregate(**options)(Thing)


def test_only_aggregates_can_be_registered() -> None:
    """@domain.aggregate on a class that is no BaseAggregate is a registration error."""
    with pytest.raises(RegistrationError, match="BaseAggregate"):
        Domain("t").aggregate(object)  # type: ignore[type-var]
