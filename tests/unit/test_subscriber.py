"""Which categories a projector or handler subscribes to: those its handled events live in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from domain import Book, BookFactEvent, Order, OrderPlaced, OrderShipped
from worker import BaseEvent, Domain, handle, on
from worker.errors import RegistrationError
from worker.ops.loader import load_domain
from worker.ops.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


class Untied(BaseEvent):
    """An event class registered on no category."""

    note: str


def test_categories_follow_the_handled_events() -> None:
    """With no categories named, a projector reads every category its event classes live in."""
    local = Domain("local")

    @local.projector(name="mixed")
    class Mixed:
        @on(OrderPlaced)
        def placed(self, event: Any, ctx: Any) -> None: ...

        @on(BookFactEvent)
        def saved(self, event: Any, ctx: Any) -> None: ...

    assert local.subscribers[0].categories == ("book:fact", "order")


def test_a_fact_event_handled_under_its_aggregate_is_refused() -> None:
    """`aggregates=[Book]` with `@on(Book.FactEvent)` would read `book` and miss every fact
    event: registration fails naming the projector, the method, the type and its category."""
    local = Domain("local")
    with pytest.raises(RegistrationError) as caught:

        @local.projector(name="catalog", aggregates=[Book])
        class Catalog:
            @on(Book.FactEvent)
            def saved(self, event: Any, ctx: Any) -> None: ...

    message = str(caught.value)
    assert message.startswith("projector 'catalog': Catalog.saved handles BookFactEvent")
    assert "whose category is 'book:fact'" in message
    assert "aggregates= subscribes it to 'book' only" in message
    assert "\n" not in message
    assert local.subscribers == ()


def test_a_named_category_no_handled_event_lives_in_is_refused() -> None:
    """Naming an extra category (here `book` next to `order`) is an error that says which
    category and where the handled events do live."""
    local = Domain("local")
    with pytest.raises(RegistrationError) as caught:

        @local.event_handler(name="notifier", stream_categories=["order", "book"])
        class Notifier:
            @handle(OrderShipped)
            def shipped(self, event: Any, ctx: Any) -> None: ...

    assert str(caught.value) == (
        "handler 'notifier': stream_categories= subscribes it to 'book', where none of the "
        "events it handles lives (OrderShipped in 'order')"
    )


def test_an_event_without_a_category_needs_categories_named() -> None:
    """A handled class registered without part_of/category could live anywhere: with no
    categories named, registration asks for stream_categories."""
    local = Domain("local")
    local.register_event(Untied)
    with pytest.raises(RegistrationError, match=r"stream_categories=\[\.\.\.\]") as caught:

        @local.projector(name="notes")
        class Notes:
            @on(Untied)
            def noted(self, event: Any, ctx: Any) -> None: ...

    assert "Notes.noted handles Untied, which is registered in no category" in str(caught.value)


def test_an_event_without_a_category_may_live_in_any_named_one() -> None:
    """Named categories are taken as given when a handled class has no category of its own;
    classes that have one must still find it named."""
    local = Domain("local")
    local.register_event(Untied)

    @local.projector(name="notes", stream_categories=["memo", "order"])
    class Notes:
        @on(Untied)
        def noted(self, event: Any, ctx: Any) -> None: ...

        @on(OrderPlaced)
        def placed(self, event: Any, ctx: Any) -> None: ...

    assert local.subscribers[0].categories == ("memo", "order")
    with pytest.raises(RegistrationError, match="whose category is 'order'"):

        @local.projector(name="memos", stream_categories=["memo"])
        class Memos:
            @on(Untied)
            def noted(self, event: Any, ctx: Any) -> None: ...

            @on(OrderPlaced)
            def placed(self, event: Any, ctx: Any) -> None: ...


def test_aggregates_that_match_the_handled_events_are_accepted() -> None:
    """`aggregates=[Order]` for Order's own events reads `order`, as before."""
    local = Domain("local")

    @local.projector(name="orders", aggregates=[Order])
    class Orders:
        @on(OrderPlaced, OrderShipped)
        def changed(self, event: Any, ctx: Any) -> None: ...

    assert local.subscribers[0].categories == ("order",)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            ROOT / "domain.toml",
            {
                "book_catalog": ("book:fact",),
                "order_summary": ("order",),
                "orders_by_status": ("order",),
                "shipment_notifier": ("order",),
                "fulfillment": ("inventory", "order", "payment"),
                "inventory_desk": ("inventory:command",),
                "payment_desk": ("payment:command",),
                "order_desk": ("order:command",),
            },
        ),
        (
            ROOT / "tests" / "faults" / "app" / "picky.toml",
            {"balances": ("counter",), "notes": ("picky",)},
        ),
    ],
    ids=["example", "fault-suite"],
)
def test_the_shipped_applications_subscribe_where_their_events_live(
    config: Path, expected: dict[str, tuple[str, ...]]
) -> None:
    """The example application and the fault suite's application register, each subscriber
    on the categories its events are written to."""
    domain = load_domain(load_settings(config))
    assert {s.name: s.categories for s in domain.subscribers} == expected
