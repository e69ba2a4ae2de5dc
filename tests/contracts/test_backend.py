"""The storage seam's contract: the real consumer gives the same result on ``MemoryBackend``
(the in-memory stand-ins) and on ``PostgresBackend`` (the worker schema and MessageDB)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from worker import BaseEvent, Context, Domain, handle
from worker.engine.backend import PostgresBackend
from worker.engine.consumer import Consumer
from worker.engine.lifecycle import Until
from worker.engine.retry import RetryPolicy
from worker.engine.tuning import ConsumerOptions
from worker.engine.wakeups import Waker
from worker.testing.backend import MemoryBackend

if TYPE_CHECKING:
    import asyncpg

    from worker.engine.backend import Backend

pytestmark = pytest.mark.anyio

OPTIONS = ConsumerOptions(
    batch_size=10,
    position_interval=0.0,
    policy=RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, jitter=0.0),
)


class Paid(BaseEvent):
    account: str
    amount: int


class Ledger:
    """Notes what it handled; refuses amounts in ``refused``."""

    def __init__(self) -> None:
        self.handled: list[tuple[str, int]] = []
        self.refused: set[int] = {13}

    @handle(Paid)
    def paid(self, event: Paid, ctx: Context) -> None:
        if event.amount in self.refused:
            raise ValueError(f"amount {event.amount} refused")
        self.handled.append((event.account, event.amount))


def ledger() -> Domain:
    domain = Domain("contract")
    domain.register_event(Paid, category="pay")
    domain.event_handler(name="ledger")(Ledger)
    return domain


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return MemoryBackend()
    pool: asyncpg.Pool[Any] = request.getfixturevalue("pool")
    return PostgresBackend(request.getfixturevalue("database_dsn"), pool)


async def run(consumer: Consumer) -> None:
    await consumer.run(Until(anyio.Event(), caught_up=True))
    await consumer.close()


async def test_a_parked_message_is_replayed_alike_on_both_backends(backend: Backend) -> None:
    """A message that keeps failing is parked with its stream's later message behind it,
    other streams go on; once the handler is fixed, replaying the stream handles both in
    order, and the consumer's position is the category head on either backend."""
    for account, amount in [("pay-a", 13), ("pay-b", 5), ("pay-a", 7)]:
        await backend.store.write(account, Paid(account=account, amount=amount).to_message())
    handlers = Ledger()
    subscriber = ledger().subscribers[0]
    consumer = Consumer(
        subscriber, "pay", waker=Waker(), options=OPTIONS, backend=backend, instance=handlers
    )
    await run(consumer)
    parked = [(p.stream_name, p.global_position) for p in await backend.parked.parked("ledger:pay")]
    assert (handlers.handled, parked) == ([("pay-b", 5)], [("pay-a", 1), ("pay-a", 3)])
    handlers.refused.clear()
    assert await backend.parked.request_replay("ledger:pay", "pay-a") == 2
    await run(consumer)
    assert handlers.handled == [("pay-b", 5), ("pay-a", 13), ("pay-a", 7)]
    assert await backend.parked.parked("ledger:pay") == []
    assert await backend.positions.load("ledger:pay") == 3


async def test_positions_left_for_later_are_committed_once_caught_up(backend: Backend) -> None:
    """Full batches whose handlers write nothing may leave their position for later
    (``position_interval``); once caught up, the consumer commits the last one: the stored
    position is the category head, and the consumer's committed position says so."""
    for n in range(20):  # two full batches: both may leave their position for later
        await backend.store.write(f"pay-{n}", Paid(account=f"pay-{n}", amount=n).to_message())
    handlers = Ledger()
    handlers.refused.clear()
    options = ConsumerOptions(batch_size=10, position_interval=60.0)
    subscriber = ledger().subscribers[0]
    consumer = Consumer(
        subscriber, "pay", waker=Waker(), options=options, backend=backend, instance=handlers
    )
    await run(consumer)
    head = await backend.store.category_head("pay")
    assert len(handlers.handled) == 20
    assert (consumer.position, consumer.committed) == (head, head)
    assert await backend.positions.load("ledger:pay") == head
