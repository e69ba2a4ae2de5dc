"""Projectors and event handlers: classes whose methods are registered per event type.

``@on(EventClass)`` marks a projector's method, ``@handle(EventClass)`` an event handler's;
``@domain.projector(...)`` / ``@domain.event_handler(...)`` register the class. A method takes
``(self, event, ctx)`` and may be ``async`` or plain.
"""

from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from worker.engine.declared import Declared
from worker.engine.names import ConsumerName
from worker.engine.options import StartFrom, SubscriberOptions
from worker.engine.partitions import Concurrency, by_stream
from worker.engine.signatures import check_callable, check_constructible
from worker.errors import RegistrationError
from worker.model.event import BaseEvent
from worker.read.generations import Projection
from worker.store.stream_name import check_category

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from worker.read.model import ReadModel


F = TypeVar("F", bound="Callable[..., Any]")
Kind = Literal["projector", "handler", "process"]

_MARK = "__worker_handles__"
_STEP_MARK = "__worker_steps__"


def on(*event_classes: type[BaseEvent]) -> Callable[[F], F]:
    """Mark a projector method as the handler of one or more event classes."""
    return _mark(event_classes)


def handle(
    *event_classes: type[BaseEvent],
    correlate: str | None = None,
    start: bool = False,
    end: bool = False,
) -> Callable[[F], F]:
    """Mark an event handler method as the handler of one or more event classes.

    In a process manager, ``correlate`` names the event's field that holds its instance's id;
    ``start``: the event may start an instance; ``end``: handling it ends the instance.
    """
    marked = _mark(event_classes)
    if correlate is None and not start and not end:
        return marked
    if not isinstance(correlate, str) or not correlate:
        raise RegistrationError(
            "@handle(..., start=/end=) is a process manager's: it needs correlate='<field of "
            "the event holding the instance id>'"
        )
    step = StepRule(correlate, bool(start), bool(end))

    def mark(method: F) -> F:
        rules: dict[type[BaseEvent], StepRule] = dict(getattr(method, _STEP_MARK, {}))
        rules.update(dict.fromkeys(event_classes, step))
        setattr(method, _STEP_MARK, rules)
        return marked(method)

    return mark


@dataclass(frozen=True)
class StepRule:
    """How a process manager's handler finds its instance, and what it may do to it."""

    correlate: str
    start: bool = False
    end: bool = False


def step_rules(method: object) -> dict[type[BaseEvent], StepRule]:
    """The ``@handle(..., correlate=...)`` rules of a method, by event class."""
    rules: dict[type[BaseEvent], StepRule] = getattr(method, _STEP_MARK, {})
    return rules


def _mark(event_classes: tuple[type[BaseEvent], ...]) -> Callable[[F], F]:
    for cls in event_classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseEvent)):
            raise RegistrationError(f"@on/@handle takes event classes, got {cls!r}")

    def mark(method: F) -> F:
        existing: tuple[type[BaseEvent], ...] = getattr(method, _MARK, ())
        setattr(method, _MARK, existing + event_classes)
        return method

    return mark


@dataclass(frozen=True)
class Route:
    """One method to call for one event class."""

    event_class: type[BaseEvent]
    method_name: str
    is_async: bool


@dataclass(frozen=True)
class Subscriber:
    """A registered projector or handler class and what it subscribes to."""

    name: str
    kind: Kind
    cls: type[Any]
    categories: tuple[str, ...]
    routes: tuple[Route, ...]
    options: SubscriberOptions = field(default_factory=SubscriberOptions)
    process: Any = None  # a process manager's ``worker.engine.process.Process``

    @property
    def read_models(self) -> tuple[type[ReadModel], ...]:
        """The read models it owns (a projector's)."""
        return tuple(self.options.read_models)

    @property
    def version(self) -> str | None:
        """Its code's version, as text."""
        return None if self.options.version is None else str(self.options.version)

    @property
    def start_from(self) -> StartFrom:
        """Where a consumer with no position yet starts."""
        return self.options.start_from

    @property
    def concurrent(self) -> Concurrency | None:
        """How its batches are handled concurrently; ``None``: one message at a time."""
        options = self.options
        if options.concurrency == 1:
            return None
        default = by_stream if self.process is None else self.process.partition
        return Concurrency(options.concurrency, options.partition_by or default)

    def consumer_name(self, category: str) -> str:
        """The stable name of the consumer of ``category``: ``{name}:{category}``."""
        return str(ConsumerName(self.name, category))

    @property
    def declared(self) -> Declared:
        """Its read models, as ``ctx.table`` checks them."""
        return Declared(
            f"{self.kind} {self.name!r}", frozenset(self.read_models), self.kind == "projector"
        )

    @property
    def projection(self) -> Projection:
        """Its read models as the read layer sees them."""
        return Projection(self.name, self.read_models, self.version)

    def slots(self) -> list[Slot]:
        """One slot per category, or ``group_size`` slots per category in a consumer group."""
        members: list[int | None] = (
            list(range(size)) if (size := self.options.group_size) > 1 else [None]
        )
        return [Slot(self, category, member) for category in self.categories for member in members]


class Subscriptions(Protocol):
    """Whatever holds the subscribers to run (a ``Domain``)."""

    @property
    def subscribers(self) -> tuple[Subscriber, ...]: ...


@dataclass(frozen=True)
class Slot:
    """What one consumer runs: a subscriber's category, or one member of its consumer group.

    Its name keys the consumer's position and lease: ``{name}:{category}``, plus
    ``@{member}/{size}`` in a group (MessageDB's consumer groups partition by stream id).
    """

    subscriber: Subscriber
    category: str
    member: int | None = None

    @property
    def size(self) -> int | None:
        return None if self.member is None else self.subscriber.options.group_size

    @property
    def consumer(self) -> ConsumerName:
        """The consumer's name, in parts."""
        return ConsumerName(self.subscriber.name, self.category, self.member, self.size)

    @property
    def name(self) -> str:
        return str(self.consumer)


# Registered class -> the read models it was registered with (the in-memory kit checks a class
# given without its domain against them).
_REGISTERED: weakref.WeakKeyDictionary[type[Any], Declared] = weakref.WeakKeyDictionary()


def remember(subscriber: Subscriber) -> None:
    """Note the read models a class was registered with (``registered_declaration``)."""
    _REGISTERED[subscriber.cls] = subscriber.declared


def registered_declaration(cls: type[Any]) -> Declared | None:
    """The read models ``cls`` was last registered with; None if it never was."""
    return _REGISTERED.get(cls)


def routes_of(cls: type[Any]) -> tuple[Route, ...]:
    """Every ``@on``/``@handle`` method of ``cls``, in definition order."""
    found: list[Route] = []
    for attr, member in inspect.getmembers(cls):
        for event_class in getattr(member, _MARK, ()):
            found.append(Route(event_class, attr, inspect.iscoroutinefunction(member)))
    return tuple(found)


def build_subscriber(
    cls: type[Any], *, kind: Kind, options: SubscriberOptions | None = None
) -> Subscriber:
    """Validate a decorated class and its options, and describe it as a ``Subscriber``."""
    options = options or SubscriberOptions()
    routes = routes_of(cls)
    if not routes:
        raise RegistrationError(f"{cls.__qualname__} has no @on/@handle methods")
    who = f"{kind} {options.name or cls.__name__!r}"
    check_calls(who, cls, routes)
    for route in routes:
        if step_rules(getattr(cls, route.method_name)):
            raise RegistrationError(
                f"{who}: {_where(cls, route)} has correlate=/start=/end=, which only a process "
                "manager's handlers take (register it with @domain.process_manager)"
            )
    categories = subscribed_categories(
        who, cls, routes, options.stream_categories, options.aggregates
    )
    options.check(who, projector=kind == "projector")
    return Subscriber(options.name or cls.__name__, kind, cls, categories, routes, options)


def check_calls(who: str, cls: type[Any], routes: tuple[Route, ...]) -> None:
    """Refuse a class whose instance, handler methods or ``setup`` the engine cannot call."""
    check_constructible(who, cls)
    for method_name in dict.fromkeys(route.method_name for route in routes):
        check_callable(who, cls, method_name, "event", "ctx")
    if callable(getattr(cls, "setup", None)):
        check_callable(who, cls, "setup", "conn")


def subscribed_categories(
    who: str,
    cls: type[Any],
    routes: tuple[Route, ...],
    stream_categories: Sequence[str] | None,
    aggregates: Sequence[type[Any]] | None,
) -> tuple[str, ...]:
    """The categories a subscriber reads: those its handled event classes live in.

    Named categories (``stream_categories``, the categories of ``aggregates``) must agree with
    the handled classes: each class's category is named, and each named category is the home
    of a handled class. An event class registered without a category may live in any named
    one, so it needs them named.
    """
    named, source = _named_categories(stream_categories, aggregates)
    homeless = [r for r in routes if r.event_class.__category__ is None]
    if not named:
        if homeless:
            route = homeless[0]
            raise RegistrationError(
                f"{who}: {_where(cls, route)} handles {route.event_class.type_name()}, which "
                "is registered in no category: register it with part_of= or category= before "
                f"{cls.__name__}, or give {cls.__name__} stream_categories=[...]"
            )
        return tuple(sorted({r.event_class.__category__ or "" for r in routes}))
    _check_homes_named(who, cls, routes, named, source)
    if not homeless:
        _check_named_are_homes(who, routes, named, source)
    return named


def _check_homes_named(
    who: str, cls: type[Any], routes: tuple[Route, ...], named: tuple[str, ...], source: str
) -> None:
    """Every handled class with a category must find it among the named ones."""
    for route in routes:
        home = route.event_class.__category__
        if home is not None and home not in named:
            raise RegistrationError(
                f"{who}: {_where(cls, route)} handles {route.event_class.type_name()}, whose "
                f"category is {home!r}, but {source} subscribes it to "
                f"{', '.join(map(repr, named))} only: add {home!r}, or leave the categories out "
                "(they follow the handled events)"
            )


def _check_named_are_homes(
    who: str, routes: tuple[Route, ...], named: tuple[str, ...], source: str
) -> None:
    """Every named category must be where some handled class lives."""
    homes = {r.event_class.__category__ for r in routes}
    for category in named:
        if category not in homes:
            handled = ", ".join(
                dict.fromkeys(
                    f"{r.event_class.type_name()} in {r.event_class.__category__!r}" for r in routes
                )
            )
            raise RegistrationError(
                f"{who}: {source} subscribes it to {category!r}, where none of the events it "
                f"handles lives ({handled})"
            )


def _named_categories(
    stream_categories: Sequence[str] | None,
    aggregates: Sequence[type[Any]] | None,
) -> tuple[tuple[str, ...], str]:
    """The explicitly named categories, in order, and what named them (for messages)."""
    named = [check_category(c) for c in stream_categories or []]
    for aggregate in aggregates or []:
        category = getattr(aggregate, "__stream_category__", None)
        if not category:
            raise RegistrationError(f"{aggregate!r} is not a registered aggregate")
        named.append(category)
    sources = [
        label
        for label, given in (("stream_categories=", stream_categories), ("aggregates=", aggregates))
        if given
    ]
    return tuple(dict.fromkeys(named)), " with ".join(sources)


def _where(cls: type[Any], route: Route) -> str:
    return f"{cls.__name__}.{route.method_name}"
