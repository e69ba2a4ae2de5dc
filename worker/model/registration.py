"""The write side's registry: aggregates, entities, events and commands, their upcasters, and
repositories, named by the domain's conventions.

``worker.Domain`` is this registry plus the read side's projectors and handlers; the write side
needs nothing of the read side, so it lives here, beside the classes it registers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from worker.errors import RegistrationError
from worker.model.aggregate import BaseAggregate
from worker.model.entity import BaseEntity, use_ids
from worker.model.event import BaseEvent, Upcaster, add_upcaster, decode, upcaster_gaps
from worker.model.repository import EventSourcedRepository
from worker.model.state import StateRepository, fact_event_class
from worker.store.conventions import Conventions, ConventionsName, conventions_named
from worker.store.stream_name import check_category

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from worker.model.repository import Repository
    from worker.store.message import Message
    from worker.store.message_store import MessageStore

E = TypeVar("E", bound=type[BaseEvent])
AggregateT = TypeVar("AggregateT", bound=BaseAggregate)
EntityT = TypeVar("EntityT", bound=type[BaseEntity])


class AggregateDeclared(NamedTuple):
    """How an aggregate was declared (``@domain.aggregate``)."""

    is_event_sourced: bool = False
    stream_category: str | None = None
    snapshot_threshold: int | None = None
    fact_events: bool = False


class EventDeclared(NamedTuple):
    """How an event or command was declared (``@domain.event``, ``@domain.command``)."""

    part_of: type[Any] | None = None
    type_name: str | None = None
    aliases: tuple[str, ...] = ()
    category: str | None = None
    command: bool = False


class EntityDeclared(NamedTuple):
    """An entity's declaration (its ``part_of`` is set on the class)."""


ENTITY = EntityDeclared()
AnyDeclared = AggregateDeclared | EventDeclared | EntityDeclared
Declaration = tuple[type[Any], AnyDeclared]


class WriteSide:
    """Registers a domain's write-side classes and makes their repositories."""

    def __init__(
        self,
        name: str = "domain",
        *,
        snapshot_threshold: int = 10,
        conventions: ConventionsName | Conventions = "eventide",
    ) -> None:
        self.name = name
        self.snapshot_threshold = snapshot_threshold
        self.conventions = conventions_named(conventions)
        self._events: dict[str, type[BaseEvent]] = {}
        self._event_classes: list[type[BaseEvent]] = []
        self._aggregates: list[type[BaseAggregate]] = []
        self._entities: list[type[BaseEntity]] = []
        # Every class as it was declared, in order: what ``init`` names by the conventions.
        self._declared: list[Declaration] = []

    def init(self, conventions: ConventionsName | Conventions | None = None) -> bool:
        """Name every declared class by ``conventions`` (default: the domain's own), once:
        aggregates' categories and ids, entities' ids, events' types and categories. The
        decorators name each class as it is declared; a domain whose conventions are chosen
        later (``[domain] conventions`` in domain.toml) is named again here, before any
        repository or worker is made. False when the conventions were those already in force."""
        chosen = self.conventions if conventions is None else conventions_named(conventions)
        if chosen is self.conventions:
            return False
        self.conventions = chosen
        self._events = {}
        # Aggregates first: their events and entities take their categories and ids.
        for kind in (AggregateDeclared, EntityDeclared, EventDeclared):
            for cls, declared in self._declared:
                if isinstance(declared, kind):
                    self._name(cls, declared, again=True)
        return True

    def _declare(self, cls: type[Any], declared: AnyDeclared) -> None:
        """Name ``cls`` by the conventions in force and keep it as declared (its latest
        declaration, when declared again)."""
        self._name(cls, declared, again=False)
        self._declared = [(known, d) for known, d in self._declared if known is not cls]
        self._declared.append((cls, declared))

    def _name(self, cls: type[Any], declared: AnyDeclared, *, again: bool) -> None:
        if isinstance(declared, AggregateDeclared):
            self._configure_aggregate(cls, declared)
        elif isinstance(declared, EventDeclared):
            if again and declared.type_name is None:
                cls.__type_name__ = ""  # named by the conventions again
            self._register_event(cls, declared)
        else:
            use_ids(cls, self.conventions.id_factory)

    def schema_version(self, message: Message) -> int | None:
        """The schema version a message was written at: the ``.v<n>`` of its type in Protean's
        conventions, metadata ``schemaVersion`` in Eventide's; ``None`` when it says none."""
        return self.conventions.schema_version(message.type, message.metadata_json)

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

        ``stream_category`` defaults to the snake-case class name (Protean's conventions prefix
        ``<domain>::`` to it, given or not); ``snapshot_threshold`` (event-sourced only) to the
        domain's. ``fact_events=True`` (not event-sourced) creates and registers
        ``cls.FactEvent``, named ``<Name>FactEvent``, in category ``{category}:fact`` (Protean's:
        the aggregate's own category, streams ``{category}-fact-{id}``).
        """

        declared = AggregateDeclared(
            is_event_sourced, stream_category, snapshot_threshold, fact_events
        )

        def register(aggregate_cls: type[AggregateT]) -> type[AggregateT]:
            self._declare(aggregate_cls, declared)
            if aggregate_cls not in self._aggregates:
                self._aggregates.append(aggregate_cls)
            return aggregate_cls

        return register(cls) if cls is not None else register

    def _configure_aggregate(self, cls: type[BaseAggregate], declared: AggregateDeclared) -> None:
        """Configure ``cls`` as an aggregate of this domain (what ``@domain.aggregate`` does)."""
        is_event_sourced, stream_category, snapshot_threshold, fact_events = declared
        if not (isinstance(cls, type) and issubclass(cls, BaseAggregate)):
            raise RegistrationError(
                f"{cls!r} must subclass worker.BaseAggregate to be an aggregate"
            )
        if is_event_sourced and fact_events:
            raise RegistrationError(
                f"{cls.__qualname__}: fact_events are for aggregates that are not event-sourced"
            )
        if snapshot_threshold is not None and (not is_event_sourced or snapshot_threshold < 1):
            raise RegistrationError(
                f"{cls.__qualname__}: snapshot_threshold must be at least 1, on an event-sourced "
                "aggregate"
            )
        category = self.conventions.category(self.name, cls.__name__, stream_category)
        cls.__stream_category__ = check_category(category)
        cls.__is_event_sourced__ = is_event_sourced
        cls.__fact_events__ = fact_events
        cls.__snapshot_threshold__ = snapshot_threshold
        cls.__domain__ = self
        cls.__appliers__ = None
        use_ids(cls, self.conventions.id_factory)
        if fact_events:
            if "FactEvent" not in cls.__dict__:
                cls.FactEvent = fact_event_class(cls)
            category = self.conventions.fact_category(cls.__stream_category__)
            self._register_event(cls.FactEvent, EventDeclared(part_of=cls, category=category))

    def entity(self, cls: EntityT | None = None, /, *, part_of: type[Any] | None = None) -> Any:
        """Register a child entity (an item of an aggregate's typed list field)."""

        def register(entity_cls: EntityT) -> EntityT:
            if not (isinstance(entity_cls, type) and issubclass(entity_cls, BaseEntity)):
                raise RegistrationError(f"{entity_cls!r} must subclass worker.BaseEntity")
            entity_cls.__part_of__ = part_of  # type: ignore[attr-defined]
            self._declare(entity_cls, ENTITY)
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
                cls,
                store,
                decode=self.decode,
                snapshot_threshold=self.snapshot_threshold,
                conventions=self.conventions,
            )
        return StateRepository(cls, store, conventions=self.conventions)

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

        ``type_name`` overrides the MessageDB type (default: the class name; Protean's
        conventions: ``<Domain>.<Name>.v<version>``, every earlier version an alias); every alias
        also decodes into this class. ``part_of`` (an aggregate) or ``category`` says which
        stream category the event belongs to. ``version`` is its schema version (default 1, or
        the class's ``__version__``); older stored payloads are upcast (``upcaster``).
        """

        return self._registering(
            cls,
            part_of=part_of,
            type_name=type_name,
            aliases=aliases,
            category=category,
            version=version,
        )

    def command(
        self,
        cls: E | None = None,
        /,
        *,
        part_of: type[Any] | None = None,
        type_name: str | None = None,
        aliases: Iterable[str] = (),
        category: str | None = None,
    ) -> Any:
        """Register a command class (a ``BaseEvent`` subclass): ``@domain.command(part_of=Order)``.

        It lives in the command category of its aggregate's (or of ``category``),
        ``{category}:command``: write it to ``{category}:command-{id}`` (from a handler, with
        ``ctx.write``). Named like an event; in Protean's layout its metadata says ``COMMAND``.
        """

        return self._registering(
            cls,
            part_of=part_of,
            type_name=type_name,
            aliases=aliases,
            category=category,
            command=True,
        )

    def _registering(self, cls: E | None, **options: Any) -> Any:
        """``register_event(cls, **options)``, now (``@domain.event``) or as the decorator it
        returns (``@domain.event(...)``)."""

        def register(event_cls: E) -> E:
            self.register_event(event_cls, **options)
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
        command: bool = False,
        version: int | None = None,
    ) -> None:
        """Register ``cls`` under its type name and aliases (see ``event`` and ``command``)."""
        if version is not None:
            if not isinstance(version, int) or version < 1:
                raise RegistrationError(f"{cls!r}: version must be 1 or more")
            cls.__version__ = version
        self._declare(cls, EventDeclared(part_of, type_name, tuple(aliases), category, command))

    def _register_event(self, cls: type[BaseEvent], declared: EventDeclared) -> None:
        part_of, type_name, aliases, category, command = declared
        if not (isinstance(cls, type) and issubclass(cls, BaseEvent)):
            raise RegistrationError(f"{cls!r} must subclass worker.BaseEvent to be an event")
        conventions = self.conventions
        cls.__conventions__ = conventions
        older: tuple[str, ...] = ()
        if type_name is not None:
            cls.__type_name__ = type_name
        else:
            version = getattr(cls, "__version__", 1)
            named = conventions.event_type(self.name, cls.__name__, version)
            if named != cls.__name__:
                cls.__type_name__ = named
                older = conventions.older_types(self.name, cls.__name__, version)
        cls.__aliases__ = (*aliases, *older)
        if category is None and part_of is not None:
            category = getattr(part_of, "__stream_category__", None) or conventions.category(
                self.name, part_of.__name__
            )
        if command and category is not None and not category.endswith(":command"):
            category = conventions.command_category(category)
        if category is not None:
            cls.__category__ = check_category(category)
        # A command is sent to its aggregate, not part of its history: no @apply for it.
        cls.__part_of__ = None if command else part_of  # type: ignore[attr-defined]
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
        return lambda upcast: add_upcaster(event, from_version, upcast)

    def check(self) -> None:
        """Raise one ``RegistrationError`` for an event whose upcaster chain has a gap."""
        for cls in self._event_classes:
            if missing := upcaster_gaps(cls):
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
