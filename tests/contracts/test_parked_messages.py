"""The parked-message store's contract: MemoryParkedMessages and PostgresParkedMessages (the
``worker.dead_letters`` table) behave alike (each test runs against both)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from worker import MessageStore, NewMessage
from worker.engine.dead_letters import Failure, ParkedMessage, PostgresParkedMessages
from worker.store.transactions import PoolTransactions
from worker.testing import MemoryMessageStore, MemoryParkedMessages, MemoryTransactions

if TYPE_CHECKING:
    from worker.store.message import Message
    from worker.store.transactions import Transactions

pytestmark = pytest.mark.anyio


@dataclass
class Backend:
    parked: Any  # PostgresParkedMessages or MemoryParkedMessages
    store: Any
    transactions: Transactions

    async def messages(self, *streams: str) -> list[Message]:
        """One message written to each stream, in order, as read back."""
        for stream in streams:
            await self.store.write(stream, NewMessage("Happened", {"stream": stream}))
        found: list[Message] = []
        for category in dict.fromkeys(s.split("-")[0] for s in streams):
            found += await self.store.read_category(category)
        return sorted(found, key=lambda m: m.global_position)

    async def park(self, consumer: str, message: Message, failure: Failure | None) -> None:
        async with self.transactions.transaction() as conn:
            await self.parked.park(conn, consumer, message, failure)


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend(MemoryParkedMessages(), MemoryMessageStore(), MemoryTransactions())
    pool = request.getfixturevalue("pool")
    return Backend(PostgresParkedMessages(pool), MessageStore(pool), PoolTransactions(pool))


def failure(text: str = "boom", attempts: int = 3) -> Failure:
    try:
        raise RuntimeError(text)
    except RuntimeError as error:
        return Failure(error, attempts, datetime.now(UTC))


async def test_a_parked_message_is_listed_with_its_failure(backend: Backend) -> None:
    """The listing names the message and the error that parked it."""
    (m,) = await backend.messages("acct-1")
    await backend.park("c", m, failure("cannot", attempts=3))
    assert await backend.parked.parked("c") == [
        ParkedMessage(
            id=1,
            consumer="c",
            stream_name="acct-1",
            position=0,
            global_position=1,
            type="Happened",
            error_type="RuntimeError",
            error="cannot",
            attempts=3,
            blocked_by=None,
            replay_requested=False,
        )
    ]
    assert await backend.parked.parked_streams("c") == {"acct-1": False}
    assert await backend.parked.parked("other") == []


async def test_parking_is_sequenced_per_stream(backend: Backend) -> None:
    """Messages parked behind a stream's first parked message point at it; another stream, or
    another consumer's parked messages of the same stream, start their own sequence."""
    first, second, other, third = await backend.messages("acct-1", "acct-1", "acct-2", "acct-1")
    await backend.park("c", first, failure())
    await backend.park("c", second, None)
    await backend.park("c", other, failure("other"))
    await backend.park("c", third, None)
    await backend.park("d", third, failure())
    listing = await backend.parked.parked("c")
    assert [(p.id, p.global_position, p.blocked_by, p.attempts) for p in listing] == [
        (1, 1, None, 3),
        (2, 2, 1, 0),
        (3, 3, None, 3),
        (4, 4, 1, 0),
    ]
    assert [(p.error_type, p.error) for p in listing][1] == (None, None)
    assert await backend.parked.parked_of_stream("c", "acct-1") == [(1, 1), (2, 2), (4, 4)]
    assert await backend.parked.parked_streams("c") == {"acct-1": False, "acct-2": False}
    assert [(p.id, p.blocked_by) for p in await backend.parked.parked("d")] == [(5, None)]
    assert [p.id for p in await backend.parked.parked(None, "acct-1")] == [1, 2, 4, 5]


async def test_a_message_is_parked_once_per_consumer(backend: Backend) -> None:
    """Parking a message again (a retried park) keeps the first record."""
    (m,) = await backend.messages("acct-1")
    await backend.park("c", m, failure("first"))
    await backend.park("c", m, failure("second"))
    assert [(p.id, p.error) for p in await backend.parked.parked("c")] == [(1, "first")]


async def test_parking_in_a_rolled_back_transaction_is_undone(backend: Backend) -> None:
    """A message is parked together with the position that passes it: both or neither."""
    (m,) = await backend.messages("acct-1")
    with pytest.raises(RuntimeError):
        async with backend.transactions.transaction() as conn:
            await backend.parked.park(conn, "c", m, failure())
            raise RuntimeError("the commit failed")
    assert await backend.parked.parked("c") == []
    assert await backend.parked.parked_streams("c") == {}


async def test_a_replay_request_marks_a_stream(backend: Backend) -> None:
    """request_replay marks every parked message of the stream; parked_streams says so."""
    a, b, c = await backend.messages("acct-1", "acct-1", "acct-2")
    await backend.park("c", a, failure())
    await backend.park("c", b, None)
    await backend.park("c", c, failure())
    assert await backend.parked.request_replay("c", "acct-1") == 2
    assert await backend.parked.request_replay("c", "acct-9") == 0
    assert await backend.parked.parked_streams("c") == {"acct-1": True, "acct-2": False}
    assert [p.replay_requested for p in await backend.parked.parked("c")] == [True, True, False]


async def test_discarding_a_stream_drops_its_parked_messages(backend: Backend) -> None:
    """discard drops one consumer's parked messages of one stream; the stream then starts a new
    sequence when parked again."""
    a, b, c, d = await backend.messages("acct-1", "acct-1", "acct-2", "acct-1")
    await backend.park("c", a, failure())
    await backend.park("c", b, None)
    await backend.park("c", c, failure())
    await backend.park("d", a, failure())
    assert await backend.parked.discard("c", "acct-1") == 2
    assert await backend.parked.parked_streams("c") == {"acct-2": False}
    assert len(await backend.parked.parked("d")) == 1
    await backend.park("c", d, None)
    assert [(p.global_position, p.blocked_by) for p in await backend.parked.parked("c")] == [
        (3, None),
        (4, None),
    ]


async def test_a_replayed_message_is_removed_and_unblocks_those_behind(backend: Backend) -> None:
    """A parked message handled again is removed in the caller's transaction; the message
    parked behind it no longer names it."""
    first, second = await backend.messages("acct-1", "acct-1")
    await backend.park("c", first, failure())
    await backend.park("c", second, None)
    async with backend.transactions.transaction() as conn:
        await backend.parked.replayed(conn, 1)
    assert [(p.id, p.blocked_by) for p in await backend.parked.parked("c")] == [(2, None)]


async def test_a_replay_in_a_rolled_back_transaction_leaves_the_message_parked(
    backend: Backend,
) -> None:
    """A replay whose transaction rolls back removes nothing."""
    first, second = await backend.messages("acct-1", "acct-1")
    await backend.park("c", first, failure())
    await backend.park("c", second, None)
    with pytest.raises(RuntimeError):
        async with backend.transactions.transaction() as conn:
            await backend.parked.replayed(conn, 1)
            raise RuntimeError("the handler's writes failed")
    assert [(p.id, p.blocked_by) for p in await backend.parked.parked("c")] == [(1, None), (2, 1)]


async def test_a_failed_replay_records_its_error_and_withdraws_the_request(
    backend: Backend,
) -> None:
    """A replay that fails again keeps the message parked with the new error, its attempts
    added, and the stream's replay request withdrawn."""
    first, second = await backend.messages("acct-1", "acct-1")
    await backend.park("c", first, failure("first", attempts=3))
    await backend.park("c", second, None)
    assert await backend.parked.request_replay("c", "acct-1") == 2
    async with backend.transactions.transaction() as conn:
        await backend.parked.failed_again(conn, 1, ValueError("again"), 1)
    listing = await backend.parked.parked("c")
    assert (listing[0].error_type, listing[0].error, listing[0].attempts) == (
        "ValueError",
        "again",
        4,
    )
    assert [p.replay_requested for p in listing] == [False, False]
    assert await backend.parked.parked_streams("c") == {"acct-1": False}
