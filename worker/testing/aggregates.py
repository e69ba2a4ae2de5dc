"""Testing an aggregate without a database: given its history, when a command, then its events.

    given(OrderPlaced(order_id="o1", customer_name="Ada")) \
        .when(lambda order: order.confirm()) \
        .then(OrderConfirmed) \
        .then_state(status="CONFIRMED")

``given`` replays the history through the aggregate's ``@apply`` methods, as the repository
does; ``when`` runs a command on it (or, with no history, on the class: ``lambda cls:
cls.place(...)``, returning the new aggregate). Every check also proves what the write side
promises: the state after the command equals the state the same events give when replayed (so
state changes only through ``@apply``), and ``version`` counts the events applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from worker.model.aggregate import BaseAggregate

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.model.event import BaseEvent

A = TypeVar("A", bound=BaseAggregate)


def replay(cls: type[A], events: tuple[BaseEvent, ...], ident: str | None = None) -> A:
    """An aggregate built from ``events`` through its ``@apply`` methods, as loaded."""
    blank = cls.model_construct() if ident is None else cls.model_construct(id=ident)
    aggregate = cast("A", blank)
    for event in events:
        aggregate._apply(event)
    aggregate._saved(len(events))
    return aggregate


def _aggregate_of(events: tuple[BaseEvent, ...]) -> type[BaseAggregate]:
    owners = {getattr(type(e), "__part_of__", None) for e in events}
    owners.discard(None)
    if len(owners) != 1:
        raise TypeError(
            "given(...) cannot tell the aggregate from these events; pass aggregate=Class"
        )
    owner = owners.pop()
    assert isinstance(owner, type) and issubclass(owner, BaseAggregate)
    return owner


def given(*events: BaseEvent, aggregate: type[A] | None = None, id: str | None = None) -> Given[A]:
    """An aggregate with this history (its class from the events' ``part_of``, or given)."""
    cls = aggregate if aggregate is not None else _aggregate_of(events)
    return Given(cast("type[A]", cls), events, id)


class Given(Generic[A]):
    """An aggregate's history, waiting for a command."""

    def __init__(self, cls: type[A], history: tuple[BaseEvent, ...], ident: str | None) -> None:
        self.cls = cls
        self.history = history
        self._ident = ident

    def when(self, command: Callable[[Any], Any]) -> Then[A]:
        """Run ``command`` on the aggregate (on the class when there is no history); a command
        that returns an aggregate (a factory such as ``Order.place``) makes that the result."""
        target: Any = replay(self.cls, self.history, self._ident) if self.history else self.cls
        try:
            returned = command(target)
        except Exception as error:
            return Then(self, target if self.history else None, error)
        result = returned if isinstance(returned, BaseAggregate) else target
        if not isinstance(result, self.cls):
            raise TypeError(f"the command left no {self.cls.__qualname__} to check")
        return Then(self, result, None)


class Then(Generic[A]):
    """What a command did: the events it raised, the state it left, or the error it raised."""

    def __init__(self, given: Given[A], aggregate: A | None, error: Exception | None) -> None:
        self._given = given
        self.aggregate = aggregate
        self.error = error

    @property
    def events(self) -> tuple[BaseEvent, ...]:
        """The events the command raised, in order."""
        self._no_error()
        assert self.aggregate is not None
        return self.aggregate.pending_events

    def then(self, *expected: BaseEvent | type[BaseEvent]) -> Then[A]:
        """The command raised exactly these events, in order: an instance must be equal, a class
        matches any event of it. Also checks ``@apply``-only state changes and versions."""
        raised = self.events
        matches = len(raised) == len(expected) and all(
            type(got) is want if isinstance(want, type) else got == want
            for got, want in zip(raised, expected, strict=False)
        )
        if not matches:
            raise AssertionError(f"raised {_describe(raised)}, expected {_describe(expected)}")
        self._check_write_side()
        return self

    def then_nothing(self) -> Then[A]:
        """The command raised no event (and changed no state)."""
        return self.then()

    def then_state(self, **fields: Any) -> Then[A]:
        """The aggregate's fields after the command (and the write side's promises)."""
        self._no_error()
        assert self.aggregate is not None
        wrong = {
            name: getattr(self.aggregate, name)
            for name, value in fields.items()
            if getattr(self.aggregate, name) != value
        }
        if wrong:
            raise AssertionError(f"state differs: {wrong} (expected {fields})")
        self._check_write_side()
        return self

    def then_raises(self, error: type[Exception], match: str | None = None) -> Then[A]:
        """The command raised ``error`` (its message containing ``match``) and no event."""
        if not isinstance(self.error, error):
            raise AssertionError(f"expected {error.__name__}, got {self.error!r}")
        if match is not None and match not in str(self.error):
            raise AssertionError(f"{self.error!r} does not say {match!r}")
        if self.aggregate is not None and self.aggregate.pending_events:
            raise AssertionError(f"raised {_describe(self.aggregate.pending_events)} as well")
        return self

    def _no_error(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the command raised {self.error!r}") from self.error

    def _check_write_side(self) -> None:
        """State only through ``@apply``; ``version`` counts the events applied."""
        aggregate = self.aggregate
        assert aggregate is not None
        history, raised = self._given.history, aggregate.pending_events
        if aggregate.__is_event_sourced__:
            expected_version = len(history) + len(raised)
            if aggregate.version != expected_version:
                raise AssertionError(
                    f"version {aggregate.version} after {len(history)} given and "
                    f"{len(raised)} raised events (expected {expected_version})"
                )
            replayed = replay(self._given.cls, history + raised, aggregate.id)
            if replayed.model_dump() != aggregate.model_dump():
                changed = {
                    name
                    for name, value in aggregate.model_dump().items()
                    if replayed.model_dump().get(name) != value
                }
                raise AssertionError(
                    f"state changed outside @apply: {sorted(changed)} differ from a replay of "
                    "the same events"
                )


def _describe(events: tuple[Any, ...]) -> str:
    if not events:
        return "no events"
    return ", ".join(e.__name__ if isinstance(e, type) else repr(e) for e in events)
