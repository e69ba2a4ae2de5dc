"""Whether the database answers: the contact a consumer keeps, and readiness without it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from worker.engine.contact import Contact
from worker.engine.state import ConsumerState
from worker.ops.health import database_up, ready


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def consumer(state: ConsumerState, contact: Contact) -> Any:
    return SimpleNamespace(state=state, lease=SimpleNamespace(contact=contact))


def test_the_outage_is_timed_from_its_first_failure_until_a_success() -> None:
    """``down_for`` counts from the first failed round trip (later failures do not restart
    it) and is 0 again after a success."""
    clock = Clock()
    contact = Contact(clock=clock)
    contact.lost()
    clock.now += 4
    contact.lost()
    clock.now += 3
    assert (contact.up, contact.down_for()) == (False, 7)
    contact.reached()
    assert (contact.up, contact.down_for()) == (True, 0)


def test_a_disconnected_consumer_is_ready_until_unready_after_has_passed() -> None:
    """A consumer without its database keeps ``/readyz`` ready for ``unready_after`` seconds
    (it reconnects on its own), then not; the database gauge says down from the start."""
    clock = Clock()
    contact = Contact(clock=clock)
    contact.lost()
    consumers = [
        consumer(ConsumerState.CAUGHT_UP, Contact()),
        consumer(ConsumerState.DISCONNECTED, contact),
    ]
    clock.now += 29.9
    assert ready(consumers, unready_after=30) and not database_up(consumers)
    clock.now += 0.1
    assert not ready(consumers, unready_after=30)
    contact.reached()
    consumers[1].state = ConsumerState.CAUGHT_UP
    assert ready(consumers, unready_after=30) and database_up(consumers)
