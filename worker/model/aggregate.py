"""Aggregates: business methods ``raise_`` events; ``@apply`` methods are the only state changes.

Version rule (event-sourced aggregates): ``version`` is the number of events applied to the
aggregate, stored and pending alike. A new instance is at 0; ``Order.place(...)`` raises
``OrderPlaced`` and is at 1; after ``confirm()`` 2, after ``ship()`` 3. The event that brought
the aggregate to version ``n`` is at MessageDB stream position ``n - 1``, so an aggregate loaded
at version ``v`` saves with MessageDB's ``expected_version = v - 1`` (``-1``: a new stream).

Aggregates that are not event-sourced keep their state in PostgreSQL: their ``version`` counts
saves (0 before the first one), and ``raise_`` only queues domain events for the next save.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import PrivateAttr

from worker.errors import MissingApplyError, RegistrationError
from worker.model.entity import BaseEntity
from worker.model.event import BaseEvent, EventRegistry

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    Applier = Callable[[Any, Any], None]

F = TypeVar("F", bound="Callable[..., Any]")

_APPLY_MARK = "__worker_apply__"


def apply(method: F) -> F:
    """Mark ``method`` as the one that applies the event type its parameter is annotated with."""
    setattr(method, _APPLY_MARK, True)
    return method


class BaseAggregate(BaseEntity):
    """Base of aggregates; configure a subclass with ``@domain.aggregate(...)``."""

    __stream_category__: ClassVar[str] = ""
    __is_event_sourced__: ClassVar[bool] = False
    __fact_events__: ClassVar[bool] = False
    __snapshot_threshold__: ClassVar[int | None] = None
    __domain__: ClassVar[EventRegistry | None] = None  # the domain it was registered with
    __appliers__: ClassVar[dict[type[BaseEvent], Applier] | None] = None
    FactEvent: ClassVar[type[BaseEvent]]

    _version: int = PrivateAttr(default=0)
    _stored_version: int = PrivateAttr(default=0)
    _snapshot_version: int = PrivateAttr(default=0)
    _pending: list[BaseEvent] = PrivateAttr(default_factory=list)

    @property
    def version(self) -> int:
        """Events applied (event-sourced) or saves made (state aggregates); see the module doc."""
        return self._version

    @property
    def stored_version(self) -> int:
        """The version the store holds for this aggregate, as of its load or last save."""
        return self._stored_version

    @property
    def pending_events(self) -> tuple[BaseEvent, ...]:
        """Events raised since the last save, in order; the next save writes them."""
        return tuple(self._pending)

    def raise_(self, event: BaseEvent) -> None:
        """Record ``event``: applied at once (event-sourced) and queued for the next save."""
        if self.__is_event_sourced__:
            self._apply(event)
        self._pending.append(event)

    def _apply(self, event: BaseEvent) -> None:
        """Change state through the event's ``@apply`` method and count it (also for replay)."""
        type(self).applier_for(type(event))(self, event)
        self._version += 1

    def _saved(self, version: int) -> None:
        """The repository stored the pending events (and state): the store is at ``version``."""
        self._pending.clear()
        self._version = version
        self._stored_version = version

    @classmethod
    def applier_for(cls, event_cls: type[BaseEvent]) -> Applier:
        """The ``@apply`` method for ``event_cls``; ``MissingApplyError`` when there is none."""
        applier = cls.appliers().get(event_cls)
        if applier is None:
            raise MissingApplyError(
                f"{cls.__qualname__} has no @apply method for {event_cls.__qualname__}: add "
                f"'@apply def when_...(self, event: {event_cls.__name__}) -> None'"
            )
        return applier

    @classmethod
    def appliers(cls) -> dict[type[BaseEvent], Applier]:
        """Event class -> ``@apply`` method, resolved from annotations on first use, then cached.

        Resolution waits for first use because events usually name their aggregate
        (``part_of=Order``) and so are defined after it.
        """
        cached = cls.__dict__.get("__appliers__")
        if cached is None:
            cached = _collect_appliers(cls)
            _check_complete(cls, cached)
            cls.__appliers__ = cached
        return typing.cast("dict[type[BaseEvent], Applier]", cached)


def _collect_appliers(cls: type[BaseAggregate]) -> dict[type[BaseEvent], Applier]:
    found: dict[type[BaseEvent], Applier] = {}
    for klass in reversed(cls.__mro__):
        for name, member in vars(klass).items():
            if callable(member) and getattr(member, _APPLY_MARK, False):
                for event_cls in _applied_types(cls, name, member):
                    found[event_cls] = member
    return found


def _applied_types(cls: type[BaseAggregate], name: str, method: Any) -> Iterable[type[BaseEvent]]:
    where = f"{cls.__qualname__}.{name}"
    params = list(inspect.signature(method).parameters)
    if len(params) != 2:
        raise RegistrationError(f"@apply method {where} must take (self, event)")
    known = {c.__name__: c for c in cls.__domain__.events} if cls.__domain__ else {}
    try:
        hints = typing.get_type_hints(method, localns=known)
    except NameError as error:
        raise RegistrationError(f"cannot resolve the event type of {where}: {error}") from None
    annotation = hints.get(params[1])
    if annotation is None:
        raise RegistrationError(f"@apply method {where} must annotate its event parameter")
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if union else (annotation,)
    for member in members:
        if not (isinstance(member, type) and issubclass(member, BaseEvent)):
            raise RegistrationError(f"@apply method {where} is annotated with {member!r}, no event")
    return members


def _check_complete(cls: type[BaseAggregate], appliers: dict[type[BaseEvent], Applier]) -> None:
    """Every event registered ``part_of`` an event-sourced aggregate must have an applier."""
    if not cls.__is_event_sourced__ or cls.__domain__ is None:
        return
    fact = getattr(cls, "FactEvent", None)
    missing = [
        event.__qualname__
        for event in cls.__domain__.events
        if getattr(event, "__part_of__", None) is cls
        and event is not fact
        and event not in appliers
    ]
    if missing:
        raise MissingApplyError(
            f"{cls.__qualname__} is event-sourced but has no @apply method for {', '.join(missing)}"
        )
