"""Running a projector or an event handler over given events, in memory, with the engine's code.

``await project(OrderSummaryProjector, in_stream("order-1", OrderPlaced(...), OrderShipped(...)))``
runs the subscriber the way the worker does, on the in-memory stand-ins: its routes
(``worker.engine.routes.route_table``), its batches and their failure rules
(``worker.engine.batch.Batches``: one transaction per batch, a failing message isolated, retried
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
from typing import TYPE_CHECKING, Any, TypeVar, cast

import structlog

from worker.engine.batch import Batches
from worker.engine.cursor import Cursor
from worker.engine.retry import RetryPolicy, is_transient
from worker.engine.routes import route_table
from worker.engine.subscriber import Subscriber, build_subscriber, registered_declaration
from worker.errors import ConsumerStoppedError, RegistrationError
from worker.model.event import BaseEvent
from worker.store.message import NewMessage
from worker.store.stream_name import check_stream_name
from worker.testing.connection import MemoryTransactions
from worker.testing.message_store import MemoryMessage, MemoryMessageStore
from worker.testing.parked import MemoryParked, MemoryParkedMessages
from worker.testing.positions import MemoryPositionStore
from worker.testing.table import MemoryReadModels

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from worker.engine.declared import Declared
    from worker.engine.lease import Lease
    from worker.engine.retry import Decision, FailureAction
    from worker.engine.subscriber import Slot, Subscriptions
    from worker.read.model import ReadModel
    from worker.store.message_store import MessageStore

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
    """
    described = _describe(subscriber, domain)
    store, read_models, positions, parked = _state(events, after)
    if not isinstance(events, MemoryMessageStore):
        for stream_name, message in events:
            await store.write(stream_name, _new_message(message))
    mark = store.messages()[-1].global_position if store.messages() else 0
    transactions = MemoryTransactions()
    policy = _Policy(
        max_attempts=max_attempts or described.options.max_attempts or 3,
        action=on_failure or described.options.on_failure or "park",
    )
    result = Projected(described, store, read_models, positions, parked, transactions, emitted=[])
    declared = _declared(subscriber, described, domain)
    consumers = [
        await _consumer(slot, instance, result, policy, declared) for slot in described.slots()
    ]
    size = batch_size or described.options.batch_size or 1000
    await _run(consumers, result, policy, size, max_emitted)
    result.emitted = [m for m in store.messages() if m.global_position > mark]
    return result


def _describe(subscriber: type[Any] | Subscriber, domain: Subscriptions | None) -> Subscriber:
    if isinstance(subscriber, Subscriber):
        return subscriber
    if domain is not None:
        for found in domain.subscribers:
            if found.cls is subscriber:
                return found
        raise RegistrationError(f"{subscriber.__qualname__} is not registered in this domain")
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


@dataclass
class _HeldLease:
    """A lease that is always held (no other process exists in memory)."""

    epoch: int
    held: bool = True
    lost: str | None = None


@dataclass
class _Consumer:
    slot: Slot
    batches: Batches


async def _consumer(
    slot: Slot, instance: Any, result: Projected, policy: RetryPolicy, declared: Declared | None
) -> _Consumer:
    """The engine's batches for one consumer, on the stand-ins."""
    name = slot.name
    positions = result.position_store
    handlers = instance if instance is not None else slot.subscriber.cls()
    result.instances[name] = handlers
    position = await positions.load(name)
    cursor = Cursor(
        position=position, committed=position, high_water=await positions.high_water(name)
    )
    cursor.parked = await result.parked_messages.parked_streams(name)
    batches = Batches(
        name,
        routes=route_table(slot.subscriber, handlers),
        transactions=result.transactions,
        # The engine names its PostgreSQL types; the stand-ins answer the same calls.
        store=cast("MessageStore", result.store),
        positions=positions,
        parked=result.parked_messages,
        lease=cast("Lease", _HeldLease(positions.take_lease(name))),
        policy=policy,
        cursor=cursor,
        log=log.bind(consumer=name),
        tables=result.read_models,
        concurrency=slot.subscriber.concurrent,
        declared=declared,
    )
    return _Consumer(slot, batches)


async def _run(
    consumers: list[_Consumer],
    result: Projected,
    policy: _Policy,
    batch_size: int,
    max_emitted: int,
) -> None:
    """Every consumer reads and applies batches until none finds anything new (or the handlers
    wrote more than ``max_emitted`` messages: they feed themselves)."""
    most = len(result.store) + max_emitted
    moved = True
    while moved:
        moved = False
        for consumer in consumers:
            name = consumer.slot.name
            if name in result.stopped:
                continue
            found = await result.store.read_category(
                consumer.slot.category,
                consumer.batches.cursor.position + 1,
                batch_size,
                consumer_group_member=consumer.slot.member,
                consumer_group_size=consumer.slot.size,
            )
            if not found:
                continue
            moved = True
            if len(result.store) > most:
                raise RuntimeError(
                    f"the handlers wrote more than {max_emitted} messages and are not caught up: "
                    "does a handler keep writing into a category it reads?"
                )
            try:
                await consumer.batches.process([m.as_message() for m in found])
            except ConsumerStoppedError:
                result.stopped[name] = policy.failures[-1]
            if result.transactions.refused is not None:
                raise result.transactions.refused


@dataclass(frozen=True)
class _Policy(RetryPolicy):
    """The consumer's retry policy without waiting, which gives up on a transient error (one a
    handler raised: the stand-ins raise none) instead of retrying it without end."""

    base_delay: float = 0.0
    max_delay: float = 0.0
    jitter: float = 0.0
    failures: list[BaseException] = field(default_factory=list, compare=False)

    def decide(self, error: BaseException, attempt: int) -> Decision:
        self.failures.append(error)
        return super().decide(error, attempt)

    def backoff(self, attempt: int) -> float:
        # Handler errors are retried through decide() below max_attempts; only a batch's
        # transient error is retried past it.
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
