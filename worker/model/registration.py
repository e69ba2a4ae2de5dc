"""Registering an aggregate class: its category, its kind, and its fact event.

What ``@domain.aggregate`` does, apart from the ``Domain`` itself: the domain passes itself as
the registrar of the aggregate's fact event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from worker.errors import RegistrationError
from worker.model.aggregate import BaseAggregate
from worker.model.state import fact_event_class
from worker.store.stream_name import check_category

if TYPE_CHECKING:
    from worker.model.event import BaseEvent


class EventRegistrar(Protocol):
    """A registry of events that aggregates can add to (a ``Domain``)."""

    @property
    def events(self) -> tuple[type[BaseEvent], ...]: ...

    def register_event(
        self, cls: type[BaseEvent], *, part_of: type[Any] | None = ..., category: str | None = ...
    ) -> None: ...


def snake_case(name: str) -> str:
    """``OrderItem`` -> ``order_item``: the default stream category of an aggregate."""
    out: list[str] = []
    for i, char in enumerate(name):
        if (
            char.isupper()
            and i
            and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower()))
        ):
            out.append("_")
        out.append(char.lower())
    return "".join(out)


def configure_aggregate(
    cls: type[BaseAggregate],
    registry: EventRegistrar,
    *,
    is_event_sourced: bool,
    stream_category: str | None,
    snapshot_threshold: int | None,
    fact_events: bool,
) -> None:
    """Configure ``cls`` as an aggregate of ``registry`` (what ``@domain.aggregate`` does)."""
    if not (isinstance(cls, type) and issubclass(cls, BaseAggregate)):
        raise RegistrationError(f"{cls!r} must subclass worker.BaseAggregate to be an aggregate")
    if is_event_sourced and fact_events:
        raise RegistrationError(
            f"{cls.__qualname__}: fact_events are for aggregates that are not event-sourced"
        )
    if snapshot_threshold is not None and (not is_event_sourced or snapshot_threshold < 1):
        raise RegistrationError(
            f"{cls.__qualname__}: snapshot_threshold must be at least 1, on an event-sourced "
            "aggregate"
        )
    cls.__stream_category__ = check_category(stream_category or snake_case(cls.__name__))
    cls.__is_event_sourced__ = is_event_sourced
    cls.__fact_events__ = fact_events
    cls.__snapshot_threshold__ = snapshot_threshold
    cls.__domain__ = registry
    cls.__appliers__ = None
    if fact_events:
        cls.FactEvent = fact_event_class(cls)
        registry.register_event(
            cls.FactEvent, part_of=cls, category=f"{cls.__stream_category__}:fact"
        )
