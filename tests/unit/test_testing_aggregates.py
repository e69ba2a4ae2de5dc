"""The aggregate fixture: given a history, when a command, then events, state or an error."""

from __future__ import annotations

import pytest

from domain import Order, OrderConfirmed, OrderItem, OrderPlaced, OrderShipped, OrderStateError
from worker import BaseAggregate, BaseEvent, Domain, apply
from worker.testing import given

PLACED = OrderPlaced(order_id="o1", customer_name="Ada", items=[])


def test_a_command_on_a_history_raises_its_event_and_changes_state() -> None:
    """Confirming a placed order raises OrderConfirmed and leaves it CONFIRMED at version 2."""
    outcome = given(PLACED, id="o1").when(lambda order: order.confirm())
    outcome.then(OrderConfirmed).then_state(status="CONFIRMED")
    assert outcome.aggregate is not None and outcome.aggregate.version == 2


def test_a_factory_command_starts_a_new_aggregate() -> None:
    """With no history the command gets the class; the aggregate it returns is checked."""
    item = OrderItem(product_id="p1", quantity=2, price="1.50")
    outcome = given(aggregate=Order).when(lambda cls: cls.place("Ada", [item]))
    outcome.then(OrderPlaced).then_state(customer_name="Ada", status="PENDING")
    assert outcome.events[0].items == [item]  # type: ignore[attr-defined]


def test_a_refused_command_raises_and_raises_no_event() -> None:
    """Shipping a pending order is refused with the business error."""
    given(PLACED).when(lambda order: order.ship("T1")).then_raises(
        OrderStateError, match="only CONFIRMED can ship"
    )


def test_an_unexpected_event_fails_the_check() -> None:
    """Expecting OrderShipped where OrderConfirmed was raised is an assertion error."""
    with pytest.raises(AssertionError, match="expected OrderShipped"):
        given(PLACED).when(lambda order: order.confirm()).then(OrderShipped)


def test_a_wrong_state_fails_the_check() -> None:
    """A state expectation that does not hold says which field differs."""
    with pytest.raises(AssertionError, match="status"):
        given(PLACED).when(lambda order: order.confirm()).then_state(status="SHIPPED")


def test_state_changed_outside_apply_is_caught() -> None:
    """A command that sets a field directly, beside the event it raises, is reported: the same
    events replayed through @apply give another state."""
    shop = Domain("sloppy")

    @shop.aggregate(is_event_sourced=True, stream_category="counter")
    class Counter(BaseAggregate):
        count: int = 0
        note: str = ""

        def bump(self) -> None:
            self.note = "bumped directly"  # not through @apply
            self.raise_(Bumped(by=1))

        @apply
        def when_bumped(self, event: Bumped) -> None:
            self.count += event.by

    @shop.event(part_of=Counter)
    class Bumped(BaseEvent):
        by: int

    with pytest.raises(AssertionError, match=r"outside @apply: \['note'\]"):
        given(Bumped(by=1)).when(lambda counter: counter.bump()).then(Bumped)
