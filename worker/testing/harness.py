"""Running a projector or an event handler over given events, in memory, with the engine's code.

``await project(OrderSummaryProjector, in_stream("order-1", OrderPlaced(...), OrderShipped(...)))``
runs the subscriber the way the worker does: the engine's own ``Consumer`` on the in-memory
backend (``worker.testing.backend.MemoryBackend``), with its routes, its batches and their
failure rules (one transaction per batch, a failing message isolated, retried
``max_attempts`` times, then parked with its stream's later messages behind it, or the consumer
stopped; malformed data parked at once) and the handler's ``Context`` (``ctx.table``,
``ctx.write`` with its deterministic ids, ``ctx.message``, ``ctx.idempotency_key``). Retries do
not wait. Each category (and consumer-group member) is its own consumer, with its own position,
as in the worker; the run ends when every consumer has caught up, including with messages the
handlers wrote into categories the subscriber reads.

What cannot run in memory: SQL on ``ctx.conn`` (``InMemorySQLError`` is raised from
``project``), a projector's ``setup(conn)`` (not called), and ``ctx.write`` in a batch replayed
after a reset (it looks its message up with SQL).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import structlog

from worker.engine.consumer import Consumer
from worker.engine.lifecycle import Mode, Until
from worker.engine.process import ProcessManager, registered_process
from worker.engine.retry import RetryPolicy, is_transient
from worker.engine.subscriber import Subscriber, build_subscriber, registered_declaration
from worker.engine.tuning import ConsumerOptions
from worker.engine.wakeups import Waker
from worker.errors import RegistrationError
from worker.model.event import BaseEvent
from worker.store.message import NewMessage
from worker.store.stream_name import check_stream_name
from worker.testing.backend import MemoryBackend
from worker.testing.connection import MemoryTransactions
from worker.testing.deadlines import MemoryDeadlines
from worker.testing.message_store import MemoryMessage, MemoryMessageStore
from worker.testing.parked import MemoryParked, MemoryParkedMessages
from worker.testing.positions import MemoryPositionStore
from worker.testing.table import MemoryReadModels

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping
    from contextlib import AbstractAsyncContextManager

    from worker.engine.declared import Declared
    from worker.engine.retry import Decision, FailureAction
    from worker.engine.subscriber import Slot, Subscriptions
    from worker.read.model import ReadModel
    from worker.store.types import Connection

M = TypeVar("M", bound="ReadModel")

StreamEvent = tuple[str, BaseEvent | NewMessage]
"""One given event: the stream it is written to, and the event (or a raw ``NewMessage``)."""

log = structlog.get_logger("worker.testing")


def in_stream(
    stream_name: str,
    *events: BaseEvent | NewMessage,
    metadata: Mapping[str, Any] | None = None,
) -> list[StreamEvent]:
    """Events of one stream, in order, to give ``project``; ``metadata`` goes with each event
    (a ``NewMessage`` keeps its own: use one for data that does not validate, or any type)."""
    check_stream_name(stream_name)
    return [
        (stream_name, e if isinstance(e, NewMessage) else e.to_message(metadata)) for e in events
    ]


@dataclass
class Projected:
    """What a run of ``project`` left: the read models' rows, the messages the handlers wrote,
    the parked messages and the positions, with the stand-ins that hold them."""

    subscriber: Subscriber
    store: MemoryMessageStore
    read_models: MemoryReadModels
    position_store: MemoryPositionStore
    parked_messages: MemoryParkedMessages
    transactions: MemoryTransactions
    emitted: list[MemoryMessage]
    """Messages written with ``ctx.write`` during this run (committed ones), in global order."""
    stopped: dict[str, BaseException] = field(default_factory=dict)
    """Consumers halted by ``on_failure="stop"`` -> the error that stopped them."""
    instances: dict[str, Any] = field(default_factory=dict)
    """Consumer name -> the subscriber instance its handlers ran on."""
    deadlines: MemoryDeadlines = field(default_factory=MemoryDeadlines)
    """Process managers' deadlines (due by ``deadlines.clock``)."""

    def rows(self, model: type[M]) -> list[M]:
        """Every row of a read model, sorted by key."""
        return self.read_models.rows(model)

    def by_key(self, model: type[M]) -> dict[Any, M]:
        """Every row of a read model, by key."""
        return self.read_models.by_key(model)

    def row(self, model: type[M], key: Any) -> M | None:
        """One row of a read model, or ``None``."""
        return self.read_models.row(model, key)

    @property
    def parked(self) -> list[MemoryParked]:
        """Every parked message (with the message, and the error that parked it), in global
        order per consumer."""
        return self.parked_messages.entries()

    @property
    def positions(self) -> dict[str, int]:
        """Consumer name -> its committed position."""
        return self.position_store.positions()

    @property
    def consumers(self) -> list[str]:
        """The names of the subscriber's consumers (one per category and group member)."""
        return [slot.name for slot in self.subscriber.slots()]


async def project(
    subscriber: type[Any] | Subscriber,
    events: Iterable[StreamEvent] | MemoryMessageStore = (),
    *,
    domain: Subscriptions | None = None,
    batch_size: int | None = None,
    max_attempts: int | None = None,
    on_failure: FailureAction | None = None,
    instance: Any = None,
    after: Projected | None = None,
    max_emitted: int = 100_000,
    deadlines: MemoryDeadlines | None = None,
) -> Projected:
    """Run a projector or event handler over ``events`` in memory; what it left behind.

    ``subscriber``: the class (found in ``domain`` when given, else described from its
    ``@on``/``@handle`` methods) or a ``Subscriber``. ``events``: ``(stream_name, event)`` pairs
    (``in_stream(...)`` makes them), written in order, or a ``MemoryMessageStore`` holding the
    messages. ``batch_size``, ``max_attempts`` and ``on_failure`` override the subscriber's own
    (defaults 1000, 3, ``"park"``). ``instance``: the object whose handlers run (default: a new
    instance per consumer). ``after``: carry on from an earlier run's state (its messages, rows,
    positions and parked messages). ``max_emitted`` guards against handlers that keep writing
    into the categories they read: the run stops with an error after writing that many.
    ``deadlines``: where a process manager's deadlines are kept (default: ``after``'s, or new
    ones on a clock that stands still).
    """
    described = _describe(subscriber, domain)
    store, read_models, positions, parked = _state(events, after)
    if not isinstance(events, MemoryMessageStore):
        for stream_name, message in events:
            await store.write(stream_name, _new_message(message))
    mark = store.messages()[-1].global_position if store.messages() else 0
    transactions = _Guarded(store, len(store) + max_emitted, max_emitted)
    deadlines = deadlines or (after.deadlines if after is not None else MemoryDeadlines())
    backend = MemoryBackend(
        store,
        positions=positions,
        parked=parked,
        tables=read_models,
        transactions=transactions,
        deadlines=deadlines,
    )
    policy = _Policy(
        max_attempts=max_attempts or described.options.max_attempts or 3,
        action=on_failure or described.options.on_failure or "park",
    )
    result = Projected(
        described, store, read_models, positions, parked, transactions, [], deadlines=deadlines
    )
    size = batch_size or described.options.batch_size or 1000
    options = ConsumerOptions(batch_size=size, policy=policy, position_interval=0.0)
    declared = _declared(subscriber, described, domain)
    consumers = [
        _consumer(slot, instance, backend, options, declared, result) for slot in described.slots()
    ]
    await _run(consumers, backend, result, policy)
    result.emitted = [m for m in store.messages() if m.global_position > mark]
    return result


def _consumer(
    slot: Slot,
    instance: Any,
    backend: MemoryBackend,
    options: ConsumerOptions,
    declared: Declared | None,
    result: Projected,
) -> Consumer:
    """The engine's consumer of ``slot`` on the in-memory backend."""
    consumer = Consumer(
        slot.subscriber,
        slot.category,
        member=slot.member,
        waker=Waker(),
        options=options,
        backend=backend,
        instance=instance,
    )
    consumer.batches.declared = declared
    result.instances[consumer.name] = consumer.instance
    return consumer


def _describe(subscriber: type[Any] | Subscriber, domain: Subscriptions | None) -> Subscriber:
    if isinstance(subscriber, Subscriber):
        return subscriber
    if domain is not None:
        for found in domain.subscribers:
            if found.cls is subscriber:
                return found
        raise RegistrationError(f"{subscriber.__qualname__} is not registered in this domain")
    if isinstance(subscriber, type) and issubclass(subscriber, ProcessManager):
        return registered_process(subscriber)
    return build_subscriber(subscriber, kind="projector")


def _declared(
    subscriber: type[Any] | Subscriber, described: Subscriber, domain: Subscriptions | None
) -> Declared | None:
    """The read models ``ctx.table`` may give: the subscriber's; for a class given without its
    domain, those it was registered with, if it was (else any)."""
    if isinstance(subscriber, Subscriber) or domain is not None:
        return described.declared
    return registered_declaration(subscriber)


def _state(
    events: Iterable[StreamEvent] | MemoryMessageStore, after: Projected | None
) -> tuple[MemoryMessageStore, MemoryReadModels, MemoryPositionStore, MemoryParkedMessages]:
    if after is not None:
        if isinstance(events, MemoryMessageStore) and events is not after.store:
            raise ValueError("give either a message store or after=, not both")
        return after.store, after.read_models, after.position_store, after.parked_messages
    store = events if isinstance(events, MemoryMessageStore) else MemoryMessageStore()
    return store, MemoryReadModels(), MemoryPositionStore(), MemoryParkedMessages()


def _new_message(message: BaseEvent | NewMessage) -> NewMessage:
    return message if isinstance(message, NewMessage) else message.to_message()


async def _run(
    consumers: list[Consumer], backend: MemoryBackend, result: Projected, policy: _Policy
) -> None:
    """Every consumer runs until caught up, again and again until none moved (the handlers
    may write into categories the others read)."""
    moved = True
    while moved:
        moved = False
        for consumer in consumers:
            if consumer.name in result.stopped:
                continue
            before = consumer.cursor.position
            await consumer.run(Until(anyio.Event(), caught_up=True))
            if backend.transactions.refused is not None:
                raise backend.transactions.refused
            if consumer.life.mode is Mode.STOPPED:
                result.stopped[consumer.name] = policy.failures[-1]
            moved = moved or consumer.cursor.position != before


class _Guarded(MemoryTransactions):
    """Transactions that refuse to begin once the handlers wrote more than ``most`` messages
    into the store (they keep feeding themselves)."""

    def __init__(self, store: MemoryMessageStore, most: int, max_emitted: int) -> None:
        super().__init__()
        self._store, self._most, self._max_emitted = store, most, max_emitted

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        self._check()
        return super().transaction()

    def statement(self) -> AbstractAsyncContextManager[Connection]:
        self._check()
        return super().statement()

    def lazy(
        self, *, after: Callable[[], Awaitable[None]] | None = None
    ) -> AbstractAsyncContextManager[Connection]:
        self._check()
        return super().lazy(after=after)

    def _check(self) -> None:
        if len(self._store) > self._most:
            raise RuntimeError(
                f"the handlers wrote more than {self._max_emitted} messages and are not caught "
                "up: does a handler keep writing into a category it reads?"
            )


@dataclass(frozen=True)
class _Policy(RetryPolicy):
    """The consumer's retry policy without waiting, which gives up on a transient error (one a
    handler raised: the stand-ins raise none) instead of retrying it without end."""

    base_delay: float = 0.0
    max_delay: float = 0.0
    jitter: float = 0.0
    failures: list[BaseException] = field(default_factory=list, compare=False)
    _transient: list[str] = field(default_factory=list, compare=False)  # in a row, by repr

    def decide(self, error: BaseException, attempt: int) -> Decision:
        self.failures.append(error)
        return super().decide(error, attempt)

    def backoff(self, attempt: int) -> float:
        # Handler errors are retried through decide() below max_attempts; only a transient
        # error is retried past it, by the batch and then by the consumer: the same error
        # met again in a row counts as one more attempt, whoever retries it.
        seen = repr(sys.exc_info()[1])
        if self._transient and self._transient[-1] != seen:
            self._transient.clear()
        self._transient.append(seen)
        attempt = max(attempt, len(self._transient))
        if attempt >= max(self.max_attempts, 3):
            raise _transient_gave_up(attempt)
        return 0.0


def _transient_gave_up(attempt: int) -> BaseException:
    error = sys.exc_info()[1]
    if error is None or not is_transient(error):
        return RuntimeError(f"retried {attempt} times")
    error.add_note(
        f"raised again on each of {attempt} attempts: the worker retries such (transient) "
        "errors without end; the testing kit gives up"
    )
    return error
