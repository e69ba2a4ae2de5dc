"""The registration phase: decorators declare each class (and name it by the conventions in
force); ``Domain.init`` names every declared class again, once, when the conventions are chosen
later (as ``[domain] conventions`` in domain.toml does)."""

from __future__ import annotations

from typing import Any

from worker import BaseAggregate, BaseEvent, Domain, apply, on


def ledger() -> Domain:
    """A domain declared under the default (Eventide) conventions."""
    domain = Domain("bank")

    @domain.aggregate(is_event_sourced=True)
    class Account(BaseAggregate):
        balance: int = 0

        @apply
        def opened(self, event: Opened) -> None: ...

    @domain.event(part_of=Account)
    class Opened(BaseEvent):
        account_id: str

    @domain.projector(name="balances")
    class Balances:
        @on(Opened)
        def opened(self, event: Any, ctx: Any) -> None: ...

    return domain


def test_classes_are_named_as_they_are_declared() -> None:
    """Without ``init``, each class bears the names of the domain's conventions at once."""
    domain = ledger()
    (account,) = domain.aggregates
    assert (account.__stream_category__, domain.events[0].type_name()) == ("account", "Opened")


def test_init_names_every_declared_class_by_the_chosen_conventions() -> None:
    """``init("protean")`` names aggregates, events and subscribers again, all at once."""
    domain = ledger()
    assert domain.init("protean") is True
    (account,) = domain.aggregates
    assert account.__stream_category__ == "bank::account"
    assert domain.events[0].type_name() == "Bank.Opened.v1"
    assert domain.subscribers[0].categories == ("bank::account",)
    assert domain.event_class("Bank.Opened.v1") is domain.events[0]


def test_init_with_the_conventions_in_force_changes_nothing() -> None:
    """Naming again by the same conventions is a no-op (``False``)."""
    domain = ledger()
    domain.init("protean")
    assert domain.init("protean") is False
    assert domain.init() is False
    assert domain.subscribers[0].categories == ("bank::account",)


def test_a_class_declared_again_keeps_its_latest_declaration() -> None:
    """Declaring a class twice names it by the last declaration, now and in ``init``."""
    domain = Domain("shop")

    class Cart(BaseAggregate):
        items: int = 0

    domain.aggregate(Cart, stream_category="basket")
    domain.aggregate(Cart, stream_category="trolley")
    domain.init("protean")
    assert Cart.__stream_category__ == "shop::trolley"
