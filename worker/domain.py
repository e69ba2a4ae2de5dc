"""The ``Domain``: registry of events, aggregates, projectors and handlers, by decorator.

An application creates one ``Domain`` and decorates its classes with it; the worker finds it by
the ``[domain] instance`` setting (``module:attribute``) after importing ``[domain] modules``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from worker.engine.subscriber import Kind, StartFrom, Subscriber, build_subscriber
from worker.errors import RegistrationError
from worker.model.aggregate import BaseAggregate
from worker.model.entity import BaseEntity
from worker.model.event import BaseEvent, Upcaster, decode
from worker.model.registration import configure_aggregate, snake_case
from worker.model.repository import EventSourcedRepository
from worker.model.state import StateRepository
from worker.store.stream_name import check_category

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from worker.engine.retry import FailureAction
    from worker.model.repository import Repository
    from worker.read.model import ReadModel
    from worker.store.message import Message
    from worker.store.message_store import MessageStore

E = TypeVar("E", bound=type[BaseEvent])
T = TypeVar("T", bound=type[Any])
AggregateT = TypeVar("AggregateT", bound=BaseAggregate)
EntityT = TypeVar("EntityT", bound=type[BaseEntity])


class DomainSection(Protocol):
    """What a domain takes from ``[domain]`` (``worker.Settings().domain``)."""

    @property
    def name(self) -> str: ...
    @property
    def snapshot_threshold(self) -> int: ...


class Configuration(Protocol):
    """Settings with a ``[domain]`` section (``worker.Settings``)."""

    @property
    def domain(self) -> DomainSection: ...


class Domain:
    """One bounded context's registry; the single object an application configures."""

    def __init__(self, name: str = "domain", *, snapshot_threshold: int = 10) -> None:
        self.name = name
        self.snapshot_threshold = snapshot_threshold
        self._events: dict[str, type[BaseEvent]] = {}
        self._subscribers: list[Subscriber] = []
        self._event_classes: list[type[BaseEvent]] = []
        self._aggregates: list[type[BaseAggregate]] = []
        self._entities: list[type[BaseEntity]] = []

    @classmethod
    def from_settings(cls, settings: Configuration) -> Domain:
        """A domain named and configured by ``[domain]`` in domain.toml."""
        return cls(settings.domain.name, snapshot_threshold=settings.domain.snapshot_threshold)

    def configure(self, settings: Configuration) -> None:
        """Apply ``[domain]`` settings to a domain created in application code."""
        self.snapshot_threshold = settings.domain.snapshot_threshold

    # -- aggregates and entities (the write side) ---------------------------------------------

    def aggregate(
        self,
        cls: type[AggregateT] | None = None,
        /,
        *,
        is_event_sourced: bool = False,
        stream_category: str | None = None,
        snapshot_threshold: int | None = None,
        fact_events: bool = False,
    ) -> Any:
        """Register an aggregate: ``@domain.aggregate(is_event_sourced=True)``.

        ``stream_category`` defaults to the snake-case class name; ``snapshot_threshold``
        (event-sourced only) to the domain's. ``fact_events=True`` (not event-sourced) creates and
        registers ``cls.FactEvent``, named ``<Name>FactEvent``, in category ``{category}:fact``.
        """

        def register(aggregate_cls: type[AggregateT]) -> type[AggregateT]:
            configure_aggregate(
                aggregate_cls,
                self,
                is_event_sourced=is_event_sourced,
                stream_category=stream_category,
                snapshot_threshold=snapshot_threshold,
                fact_events=fact_events,
            )
            if aggregate_cls not in self._aggregates:
                self._aggregates.append(aggregate_cls)
            return aggregate_cls

        return register(cls) if cls is not None else register

    def entity(self, cls: EntityT | None = None, /, *, part_of: type[Any] | None = None) -> Any:
        """Register a child entity (an item of an aggregate's typed list field)."""

        def register(entity_cls: EntityT) -> EntityT:
            if not (isinstance(entity_cls, type) and issubclass(entity_cls, BaseEntity)):
                raise RegistrationError(f"{entity_cls!r} must subclass worker.BaseEntity")
            entity_cls.__part_of__ = part_of  # type: ignore[attr-defined]
            if entity_cls not in self._entities:
                self._entities.append(entity_cls)
            return entity_cls

        return register(cls) if cls is not None else register

    @property
    def aggregates(self) -> tuple[type[BaseAggregate], ...]:
        """Every registered aggregate class."""
        return tuple(self._aggregates)

    def repository_for(self, cls: type[AggregateT], store: MessageStore) -> Repository[AggregateT]:
        """The repository of ``cls`` on ``store`` (whose database also holds state rows).

        Event-sourced aggregates load by replay from their latest snapshot; the others load
        their state row (and write their fact event on each save).
        """
        if cls not in self._aggregates:
            raise RegistrationError(f"{cls.__qualname__} is no aggregate of domain {self.name!r}")
        if cls.__is_event_sourced__:
            return EventSourcedRepository(
                cls, store, decode=self.decode, snapshot_threshold=self.snapshot_threshold
            )
        return StateRepository(cls, store)

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
        version: int | None = None,
    ) -> Any:
        """Register an event class: ``@domain.event(part_of=Order, aliases=["Placed.v1"])``.

        ``type_name`` overrides the MessageDB type (default: the class name); every alias also
        decodes into this class. ``part_of`` (an aggregate) or ``category`` says which stream
        category the event belongs to. ``version`` is its schema version (default 1, or the
        class's ``__version__``); older stored payloads are upcast (``upcaster``).
        """

        def register(event_cls: E) -> E:
            self.register_event(
                event_cls,
                part_of=part_of,
                type_name=type_name,
                aliases=aliases,
                category=category,
                version=version,
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
        version: int | None = None,
    ) -> None:
        """Register ``cls`` under its type name and aliases (see ``event``)."""
        if not (isinstance(cls, type) and issubclass(cls, BaseEvent)):
            raise RegistrationError(f"{cls!r} must subclass worker.BaseEvent to be an event")
        if version is not None:
            if not isinstance(version, int) or version < 1:
                raise RegistrationError(f"{cls.__qualname__}: version must be 1 or more")
            cls.__version__ = version
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

    def upcaster(
        self, event: type[BaseEvent], *, from_version: int
    ) -> Callable[[Upcaster], Upcaster]:
        """Register a function that turns a stored payload of ``event`` at ``from_version`` into
        the payload of ``from_version + 1``: ``@domain.upcaster(OrderPlaced, from_version=1)``.
        Every version of the class below its own needs one (``check`` says which is missing)."""

        def register(upcast: Upcaster) -> Upcaster:
            name = f"upcaster {getattr(upcast, '__qualname__', upcast)!s} of {event.__qualname__}"
            if not 1 <= from_version < event.__version__:
                raise RegistrationError(
                    f"{name} from version {from_version}: {event.__qualname__} is at version "
                    f"{event.__version__}, so its upcasters start at 1 .. {event.__version__ - 1}"
                )
            steps = dict(event.__dict__.get("__upcasters__", {}))
            if from_version in steps:
                raise RegistrationError(f"{name}: version {from_version} has an upcaster already")
            steps[from_version] = upcast
            event.__upcasters__ = steps
            return upcast

        return register

    def check(self) -> None:
        """Raise one ``RegistrationError`` for an event whose upcaster chain has a gap."""
        for cls in self._event_classes:
            steps = cls.__dict__.get("__upcasters__", {})
            missing = [v for v in range(1, cls.__version__) if v not in steps]
            if missing:
                raise RegistrationError(
                    f"{cls.__qualname__} is at version {cls.__version__} but has no upcaster "
                    f"from version {', '.join(map(str, missing))}: register "
                    f"@domain.upcaster({cls.__name__}, from_version={missing[0]})"
                )

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
        return decode(cls, message)

    # -- read side: projectors and event handlers --------------------------------------------

    def projector(
        self,
        *,
        name: str | None = None,
        stream_categories: list[str] | tuple[str, ...] | None = None,
        aggregates: list[type[Any]] | tuple[type[Any], ...] | None = None,
        max_attempts: int | None = None,
        on_failure: FailureAction | None = None,
        batch_size: int | None = None,
        read_models: list[type[ReadModel]] | tuple[type[ReadModel], ...] = (),
        version: str | int | None = None,
        group_size: int = 1,
        start_from: StartFrom = "origin",
    ) -> Callable[[T], T]:
        """Register a projector class whose ``@on(Event)`` methods update read models.

        It reads the categories its handled event classes live in; ``stream_categories`` or
        ``aggregates`` may name them, and must agree with those classes.
        ``read_models`` are the ``ReadModel`` tables it owns (created by the worker, written
        through ``ctx.table(Model)``); ``version`` names the projection's code version, and a
        change of it can trigger a rebuild. ``group_size`` splits each category into that
        many MessageDB consumer-group members, each run (and leased) on its own, so replicas
        share the work. Its writes commit with the consumer's position: exactly once.
        ``start_from="head"``: the first time one of its consumers runs, it starts at its
        category's head rather than its first message; later runs resume from their position
        (a rebuild or a reset still starts where it is told).
        """
        return self._subscriber(
            "projector",
            name=name,
            stream_categories=stream_categories,
            aggregates=aggregates,
            max_attempts=max_attempts,
            on_failure=on_failure,
            batch_size=batch_size,
            read_models=read_models,
            version=version,
            group_size=group_size,
            start_from=start_from,
        )

    def event_handler(
        self,
        *,
        name: str | None = None,
        stream_categories: list[str] | tuple[str, ...] | None = None,
        aggregates: list[type[Any]] | tuple[type[Any], ...] | None = None,
        max_attempts: int | None = None,
        on_failure: FailureAction | None = None,
        batch_size: int | None = None,
        group_size: int = 1,
        start_from: StartFrom = "origin",
    ) -> Callable[[T], T]:
        """Register an event handler class whose ``@handle(Event)`` methods react to events.

        Messages it writes with ``ctx.write`` commit exactly once with its position; outside
        side effects are at-least-once and should use ``ctx.idempotency_key``.
        ``start_from="head"``: a new handler starts at its categories' heads the first time it
        runs (it reacts to what happens from now on); later runs resume from their position.
        """
        return self._subscriber(
            "handler",
            name=name,
            stream_categories=stream_categories,
            aggregates=aggregates,
            max_attempts=max_attempts,
            on_failure=on_failure,
            batch_size=batch_size,
            group_size=group_size,
            start_from=start_from,
        )

    def _subscriber(self, kind: Kind, **options: Any) -> Callable[[T], T]:
        def register(cls: T) -> T:
            subscriber = build_subscriber(cls, kind=kind, **options)
            if any(s.name == subscriber.name for s in self._subscribers):
                raise RegistrationError(f"a projector or handler named {subscriber.name!r} exists")
            self._subscribers.append(subscriber)
            return cls

        return register

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        """Every registered projector and event handler."""
        return tuple(self._subscribers)
