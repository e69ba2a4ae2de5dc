"""Process managers: stateful subscribers whose instances are event-sourced in a category of
their own.

A process manager is a class with typed fields (its state) and ``@handle(Event,
correlate="order_id", start=..., end=...)`` methods ``(self, event, ctx)``. Each event finds
its instance by the field ``correlate`` names: the stream ``{stream_category}-{value}``. A
handler changes the instance's fields and issues commands with ``ctx.write``; the change is
stored as one transition event (the instance's whole state, the handler's name, whether it
ended: Protean's layout) written with the instance's expected version in the batch's
transaction, with the commands and the consumer's position. ``worker.engine.steps`` runs them.
"""

from __future__ import annotations

import difflib
import uuid
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, PrivateAttr, create_model

from worker.engine.signatures import check_callable
from worker.engine.subscriber import (
    Route,
    StepRule,
    Subscriber,
    routes_of,
    step_rules,
    subscribed_categories,
)
from worker.errors import ProcessError, RegistrationError
from worker.model.event import BaseEvent

if TYPE_CHECKING:
    from collections.abc import Hashable

    from worker.engine.options import SubscriberOptions
    from worker.store.message import Message

_TRANSITION_IDS = uuid.UUID("2b0e5c44-8f8e-4c1c-9a55-7d4f0f2e6b31")


class ProcessManager(BaseModel):
    """Base of process managers: subclass it with typed fields (every one with a default: a
    new instance starts from them) and register it with ``@domain.process_manager(...)``."""

    model_config = ConfigDict(extra="ignore", validate_assignment=False)

    __transition__: ClassVar[type[BaseEvent]]

    _process_id: str = PrivateAttr(default="")
    _version: int = PrivateAttr(default=-1)  # the stream's version (-1: not stored yet)
    _ended: bool = PrivateAttr(default=False)
    _handled: frozenset[str] = PrivateAttr(default=frozenset())  # its transitions' ids

    @property
    def process_id(self) -> str:
        """The instance's id: the correlated value that started it."""
        return self._process_id

    @property
    def version(self) -> int:
        """Its stream's version: transitions stored, minus one (``-1``: a new instance)."""
        return self._version

    @property
    def ended(self) -> bool:
        """Whether it has ended: it ignores every later event."""
        return self._ended

    def mark_as_complete(self) -> None:
        """End the instance (as ``end=True`` on the handler does)."""
        self._ended = True


@dataclass(frozen=True)
class Process:
    """What the engine knows of a registered process manager."""

    cls: type[ProcessManager]
    transition: type[BaseEvent]
    rules: dict[tuple[str, type[BaseEvent]], StepRule]  # (method, event class) -> its rule

    @property
    def category(self) -> str:
        """The category of its instances' streams (as its domain's conventions name it)."""
        return self.transition.__category__ or ""

    def stream_name(self, process_id: str) -> str:
        """The stream of the instance ``process_id``."""
        return f"{self.category}-{process_id}"

    def rule(self, method: str, event_class: type[BaseEvent]) -> StepRule:
        return self.rules[(method, event_class)]

    def correlation(self, event: BaseEvent, rule: StepRule) -> str:
        """The instance id ``event`` names (``ProcessError`` when it names none)."""
        value = getattr(event, rule.correlate, None)
        if value is None or value == "":
            raise ProcessError(
                f"{type(event).__name__} has no value in {rule.correlate!r}, the field "
                f"{self.cls.__name__} correlates it by"
            )
        return str(value)

    def partition(self, message: Message) -> Hashable:
        """A message's partition with ``concurrency > 1``: the instance it correlates to (its
        stream when its type is not one this process manager handles, or it names none), so
        one instance's steps never run side by side."""
        rule = self._by_type().get(message.type)
        data = orjson.loads(message.data_json) if rule is not None else None
        value = data.get(rule.correlate) if isinstance(data, dict) and rule else None
        return message.stream_name if value is None else ("instance", str(value))

    def _by_type(self) -> dict[str, StepRule]:
        """Message type (and alias) -> the rule of its handler."""
        found: dict[str, StepRule] = {}
        for (_, cls), rule in self.rules.items():
            for name in (cls.type_name(), *cls.__aliases__):
                found[name] = rule
        return found

    def handles(self, event_class: type[BaseEvent]) -> StepRule | None:
        """The rule of the handler of ``event_class``, if one handles it."""
        for (_, cls), rule in self.rules.items():
            if cls is event_class:
                return rule
        return None


def transition_event(cls: type[ProcessManager]) -> type[BaseEvent]:
    """The transition event of ``cls``: ``_<Name>Transition`` with the instance's state, the
    handler that made it and whether the instance ended (Protean's layout)."""
    made: type[BaseEvent] = create_model(
        f"_{cls.__name__}Transition",
        __base__=BaseEvent,
        __module__=cls.__module__,
        state=(dict[str, Any], ...),
        handler_name=(str, ...),
        is_complete=(bool, False),
    )
    return made


def transition_id(consumer: str, handled: Message) -> str:
    """The id of the transition made by handling ``handled``: the same each time it is
    handled, so an instance knows the messages it has handled."""
    return str(uuid.uuid5(_TRANSITION_IDS, f"{consumer}/{handled.id}"))


def build_process(
    cls: type[Any], transition: type[BaseEvent], options: SubscriberOptions
) -> Subscriber:
    """Validate a process manager class and describe it as a ``Subscriber`` (its handled
    events registered in no category arrive only as deadlines)."""
    if not (isinstance(cls, type) and issubclass(cls, ProcessManager)):
        raise RegistrationError(
            f"process manager {cls!r} must subclass worker.ProcessManager (its fields are the "
            "instance's state)"
        )
    name = options.name or cls.__name__
    who = f"process manager {name!r}"
    found = routes_of(cls)
    if not found:
        raise RegistrationError(f"{cls.__qualname__} has no @handle methods")
    for method_name in dict.fromkeys(route.method_name for route in found):
        check_callable(who, cls, method_name, "event", "ctx")
    rules = _rules(who, cls, found)
    homed = tuple(r for r in found if r.event_class.__category__ is not None)
    if not homed:
        raise RegistrationError(f"{who} handles no event registered in a category")
    categories = subscribed_categories(
        who, cls, homed, options.stream_categories, options.aggregates
    )
    if transition.__category__ in categories:
        raise RegistrationError(
            f"{who} handles events of its own category {transition.__category__!r}"
        )
    options.check(who, projector=False, process=True)
    cls.__transition__ = transition
    routes = tuple(Route(r.event_class, r.method_name, True) for r in found)
    return Subscriber(
        name, "process", cls, categories, routes, options, Process(cls, transition, rules)
    )


def _rules(
    who: str, cls: type[Any], routes: tuple[Route, ...]
) -> dict[tuple[str, type[BaseEvent]], StepRule]:
    rules: dict[tuple[str, type[BaseEvent]], StepRule] = {}
    for route in routes:
        rule = step_rules(getattr(cls, route.method_name)).get(route.event_class)
        if rule is None:
            raise RegistrationError(
                f"{who}: {cls.__name__}.{route.method_name} handles "
                f"{route.event_class.type_name()} without correlate=: say which field of it "
                "holds the instance id, e.g. @handle(OrderPlaced, correlate='order_id')"
            )
        _check_field(who, cls, route, rule.correlate)
        rules[(route.method_name, route.event_class)] = rule
    if not any(rule.start for rule in rules.values()):
        raise RegistrationError(
            f"{who}: no handler may start an instance: mark one @handle(..., start=True)"
        )
    return rules


# Registered process manager class -> its description (the testing kit finds a class given
# without its domain here).
_REGISTERED: weakref.WeakKeyDictionary[type[Any], Subscriber] = weakref.WeakKeyDictionary()


def remember_process(subscriber: Subscriber) -> None:
    """Note how a process manager class was last registered (``registered_process``)."""
    _REGISTERED[subscriber.cls] = subscriber


def registered_process(cls: type[Any]) -> Subscriber:
    """How ``cls`` was last registered as a process manager."""
    found = _REGISTERED.get(cls)
    if found is None:
        raise RegistrationError(
            f"{cls.__qualname__} is not registered: decorate it with @domain.process_manager"
        )
    return found


def _check_field(who: str, cls: type[Any], route: Route, field: str) -> None:
    """Refuse a ``correlate=`` that names no field of the event (a misspelt one would find no
    instance for every event)."""
    fields = list(route.event_class.model_fields)
    if field in fields:
        return
    close = difflib.get_close_matches(field, fields, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (its fields: {', '.join(fields)})"
    raise RegistrationError(
        f"{who}: {cls.__name__}.{route.method_name} correlates "
        f"{route.event_class.type_name()} by {field!r}, which is no field of it{hint}"
    )
