"""The ``Domain``: registry of events, aggregates, projectors and handlers, by decorator.

An application creates one ``Domain`` and decorates its classes with it; the worker finds it by
the ``[domain] instance`` setting (``module:attribute``) after importing ``[domain] modules``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from worker.errors import MalformedMessageError, RegistrationError
from worker.event import BaseEvent
from worker.stream_name import check_category

if TYPE_CHECKING:
    from collections.abc import Iterable

    from worker.message import Message
    from worker.settings import Settings

E = TypeVar("E", bound=type[BaseEvent])


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


class Domain:
    """One bounded context's registry; the single object an application configures."""

    def __init__(self, name: str = "domain", *, snapshot_threshold: int = 10) -> None:
        self.name = name
        self.snapshot_threshold = snapshot_threshold
        self._events: dict[str, type[BaseEvent]] = {}
        self._event_classes: list[type[BaseEvent]] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> Domain:
        """A domain named and configured by ``[domain]`` in domain.toml."""
        return cls(settings.domain.name, snapshot_threshold=settings.domain.snapshot_threshold)

    def configure(self, settings: Settings) -> None:
        """Apply ``[domain]`` settings to a domain created in application code."""
        self.snapshot_threshold = settings.domain.snapshot_threshold

    # -- events ------------------------------------------------------------------------------

    def event(
        self,
        cls: E | None = None,
        /,
        *,
        part_of: type[Any] | None = None,
        type_name: str | None = None,
        aliases: Iterable[str] = (),
        category: str | None = None,
    ) -> Any:
        """Register an event class: ``@domain.event(part_of=Order, aliases=["Placed.v1"])``.

        ``type_name`` overrides the MessageDB type (default: the class name); every alias also
        decodes into this class. ``part_of`` (an aggregate) or ``category`` says which stream
        category the event belongs to.
        """

        def register(event_cls: E) -> E:
            self.register_event(
                event_cls,
                part_of=part_of,
                type_name=type_name,
                aliases=aliases,
                category=category,
            )
            return event_cls

        return register(cls) if cls is not None else register

    def register_event(
        self,
        cls: type[BaseEvent],
        *,
        part_of: type[Any] | None = None,
        type_name: str | None = None,
        aliases: Iterable[str] = (),
        category: str | None = None,
    ) -> None:
        """Register ``cls`` under its type name and aliases (see ``event``)."""
        if not (isinstance(cls, type) and issubclass(cls, BaseEvent)):
            raise RegistrationError(f"{cls!r} must subclass worker.BaseEvent to be an event")
        if type_name is not None:
            cls.__type_name__ = type_name
        cls.__aliases__ = tuple(aliases)
        if category is None and part_of is not None:
            category = getattr(part_of, "__stream_category__", None) or snake_case(part_of.__name__)
        if category is not None:
            cls.__category__ = check_category(category)
        cls.__part_of__ = part_of  # type: ignore[attr-defined]
        for name in (cls.type_name(), *cls.__aliases__):
            known = self._events.get(name)
            if known is not None and known is not cls:
                raise RegistrationError(
                    f"event type {name!r} of {cls.__qualname__} is already registered "
                    f"for {known.__qualname__}"
                )
            self._events[name] = cls
        if cls not in self._event_classes:
            self._event_classes.append(cls)

    @property
    def events(self) -> tuple[type[BaseEvent], ...]:
        """Every registered event class."""
        return tuple(self._event_classes)

    def event_class(self, type_name: str) -> type[BaseEvent] | None:
        """The class a MessageDB type (or alias) decodes into, or ``None`` if unknown."""
        return self._events.get(type_name)

    def decode(self, message: Message) -> BaseEvent | None:
        """The typed event of a message; ``None`` for an unknown type.

        Data that does not validate raises ``MalformedMessageError`` (permanent for that message).
        """
        cls = self._events.get(message.type)
        if cls is None:
            return None
        try:
            return cls.model_validate(message.data)
        except ValidationError as error:
            raise MalformedMessageError(
                message.stream_name,
                message.position,
                message.type,
                "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or '<data>'}: {e['msg']}"
                    for e in error.errors()
                ),
            ) from None
