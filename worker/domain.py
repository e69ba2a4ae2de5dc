"""The ``Domain``: registry of events, aggregates, projectors and handlers, by decorator
(the write side's registry is ``worker.model.registration.WriteSide``).

An application creates one ``Domain`` and decorates its classes with it; the worker finds it by
the ``[domain] instance`` setting (``module:attribute``) after importing ``[domain] modules``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from worker.engine.subscriber import Kind, StartFrom, Subscriber, build_subscriber, remember
from worker.errors import RegistrationError
from worker.model.registration import WriteSide
from worker.store.conventions import Conventions, ConventionsName, conventions_named

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.engine.partitions import PartitionKey
    from worker.engine.retry import FailureAction
    from worker.read.model import ReadModel

T = TypeVar("T", bound=type[Any])


class DomainSection(Protocol):
    """What a domain takes from ``[domain]`` (``worker.Settings().domain``)."""

    @property
    def name(self) -> str: ...
    @property
    def snapshot_threshold(self) -> int: ...
    @property
    def conventions(self) -> ConventionsName | None: ...


class Configuration(Protocol):
    """Settings with a ``[domain]`` section (``worker.Settings``)."""

    @property
    def domain(self) -> DomainSection: ...


class Domain(WriteSide):
    """One bounded context's registry; the single object an application configures.

    ``conventions`` (``"eventide"``, the default, or ``"protean"``) say how its messages are
    named and laid out in MessageDB: categories, types, ids, fact events, snapshots, metadata
    (``worker.store.conventions``).
    """

    def __init__(
        self,
        name: str = "domain",
        *,
        snapshot_threshold: int = 10,
        conventions: ConventionsName | Conventions = "eventide",
    ) -> None:
        super().__init__(name, snapshot_threshold=snapshot_threshold, conventions=conventions)
        self._subscribers: list[Subscriber] = []
        # How each subscriber was registered, to name it again when the conventions change.
        self._subscriber_options: list[tuple[Kind, type[Any], dict[str, Any]]] = []

    @classmethod
    def from_settings(cls, settings: Configuration) -> Domain:
        """A domain named and configured by ``[domain]`` in domain.toml."""
        return cls(
            settings.domain.name,
            snapshot_threshold=settings.domain.snapshot_threshold,
            conventions=settings.domain.conventions or "eventide",
        )

    def configure(self, settings: Configuration) -> None:
        """Apply ``[domain]`` settings to a domain created in application code."""
        self.snapshot_threshold = settings.domain.snapshot_threshold
        if settings.domain.conventions is not None:
            self.use_conventions(settings.domain.conventions)

    def use_conventions(self, conventions: ConventionsName | Conventions) -> None:
        """Switch to other conventions, naming every registered class again (categories, types,
        ids, subscribers' categories). Do it before any repository or worker is made."""
        if not self._rename(conventions_named(conventions)):
            return
        self._subscribers = [
            build_subscriber(cls, kind=kind, **options)
            for kind, cls, options in self._subscriber_options
        ]

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
        concurrency: int = 1,
        partition_by: PartitionKey | None = None,
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
        (a rebuild or a reset still starts where it is told). ``concurrency=n`` handles up to
        n partitions of a batch at once (``partition_by(message)``, default the stream name),
        each in order, for handlers that wait on I/O (see ``worker.engine.partitions``).
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
            concurrency=concurrency,
            partition_by=partition_by,
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
        concurrency: int = 1,
        partition_by: PartitionKey | None = None,
    ) -> Callable[[T], T]:
        """Register an event handler class whose ``@handle(Event)`` methods react to events.

        Messages it writes with ``ctx.write`` commit exactly once with its position; outside
        side effects are at-least-once and should use ``ctx.idempotency_key``.
        ``start_from="head"``: a new handler starts at its categories' heads the first time it
        runs (it reacts to what happens from now on); later runs resume from their position.
        ``concurrency=n`` handles up to n partitions of a batch at once (``partition_by(message)``,
        default the stream name), each in order: for handlers that wait on I/O (see
        ``worker.engine.partitions``).
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
            concurrency=concurrency,
            partition_by=partition_by,
        )

    def _subscriber(self, kind: Kind, **options: Any) -> Callable[[T], T]:
        def register(cls: T) -> T:
            subscriber = build_subscriber(cls, kind=kind, **options)
            if any(s.name == subscriber.name for s in self._subscribers):
                raise RegistrationError(f"a projector or handler named {subscriber.name!r} exists")
            self._subscribers.append(subscriber)
            self._subscriber_options.append((kind, cls, options))
            remember(subscriber)
            return cls

        return register

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        """Every registered projector and event handler."""
        return tuple(self._subscribers)
