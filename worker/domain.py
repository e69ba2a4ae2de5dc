"""The ``Domain``: registry of events, aggregates, projectors and handlers, by decorator
(the write side's registry is ``worker.model.registration.WriteSide``).

An application creates one ``Domain`` and decorates its classes with it; the worker finds it by
the ``[domain] instance`` setting (``module:attribute``) after importing ``[domain] modules``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from worker.engine.options import SubscriberOptions, taking_options
from worker.engine.process import build_process, remember_process, transition_event
from worker.engine.subscriber import Kind, Subscriber, build_subscriber, remember
from worker.errors import RegistrationError
from worker.model.registration import WriteSide

if TYPE_CHECKING:
    from worker.store.conventions import Conventions, ConventionsName

T = TypeVar("T", bound=type[Any])


class Registers(Protocol):
    """A class decorator that registers the class and returns it."""

    def __call__(self, cls: T, /) -> T: ...


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

    @classmethod
    def from_settings(cls, settings: Configuration) -> Domain:
        """A domain named and configured by ``[domain]`` in domain.toml."""
        return cls(
            settings.domain.name,
            snapshot_threshold=settings.domain.snapshot_threshold,
            conventions=settings.domain.conventions or "eventide",
        )

    def configure(self, settings: Configuration) -> None:
        """The registration phase of a loaded application: apply ``[domain]`` settings to a
        domain created in application code, and name every declared class by its conventions
        (``init``)."""
        self.snapshot_threshold = settings.domain.snapshot_threshold
        self.init(settings.domain.conventions)

    def use_conventions(self, conventions: ConventionsName | Conventions) -> None:
        """Switch to other conventions (``init``). Do it before any repository or worker is
        made."""
        self.init(conventions)

    def init(self, conventions: ConventionsName | Conventions | None = None) -> bool:
        """Name every declared class by ``conventions`` once (``WriteSide.init``), and describe
        every projector and handler again on the events so named."""
        if not super().init(conventions):
            return False
        self._subscribers = [self._describe(s.cls, s.kind, s.options) for s in self._subscribers]
        return True

    def _describe(self, cls: type[Any], kind: Kind, options: SubscriberOptions) -> Subscriber:
        """``cls`` described as a subscriber of ``kind`` on the events as now named."""
        if kind != "process":
            return build_subscriber(cls, kind=kind, options=options)
        transition = getattr(cls, "__transition__", None) or transition_event(cls)
        category = self.conventions.category(self.name, cls.__name__, options.stream_category)
        self.register_event(transition, category=category)
        described = build_process(cls, transition, options)
        remember_process(described)
        return described

    # -- read side: projectors and event handlers --------------------------------------------

    @taking_options(SubscriberOptions)
    def projector(self, options: SubscriberOptions) -> Registers:
        """Register a projector class whose ``@on(Event)`` methods update read models; its
        options are the fields of ``SubscriberOptions``, as keywords.

        It reads the categories its handled event classes live in (``stream_categories`` or
        ``aggregates`` may name them, and must agree with those classes). ``read_models`` are
        the tables it owns, written through ``ctx.table(Model)``: its writes commit with the
        consumer's position, exactly once.
        """
        return self._subscriber("projector", options)

    @taking_options(SubscriberOptions)
    def event_handler(self, options: SubscriberOptions) -> Registers:
        """Register an event handler class whose ``@handle(Event)`` methods react to events;
        its options are the fields of ``SubscriberOptions`` but a projector's own
        (``read_models``, ``version``), as keywords.

        Messages it writes with ``ctx.write`` commit exactly once with its position; outside
        side effects are at-least-once and should use ``ctx.idempotency_key``.
        """
        return self._subscriber("handler", options)

    @taking_options(SubscriberOptions)
    def process_manager(self, options: SubscriberOptions) -> Registers:
        """Register a process manager: a ``ProcessManager`` subclass whose fields are an
        instance's state and whose ``@handle(Event, correlate=..., start=..., end=...)``
        methods take ``(self, event, ctx)``; its options are the fields of
        ``SubscriberOptions`` but a projector's own, and ``stream_category`` (where its
        instances' streams live).

        Each handled event changes one instance (its transition event in
        ``{stream_category}-{id}``), and the commands it writes with ``ctx.write`` and the
        deadlines it schedules with ``ctx.schedule`` commit with the consumer's position,
        exactly once (``worker.engine.steps``).
        """
        return self._subscriber("process", options)

    def _subscriber(self, kind: Kind, options: SubscriberOptions) -> Registers:
        def register(cls: T) -> T:
            subscriber = self._describe(cls, kind, options)
            if any(s.name == subscriber.name for s in self._subscribers):
                raise RegistrationError(f"a projector or handler named {subscriber.name!r} exists")
            self._subscribers.append(subscriber)
            remember(subscriber)
            return cls

        return register

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        """Every registered projector, event handler and process manager."""
        return tuple(self._subscribers)
