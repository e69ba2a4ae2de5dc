"""The message store's contract: MemoryMessageStore and MessageStore on the genuine MessageDB
behave alike (each test runs against both)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from worker import ExpectedVersionError, InvalidStreamNameError, MessageStore, NewMessage
from worker.store.transactions import PoolTransactions
from worker.testing import MemoryMessageStore, MemoryTransactions, group_member, hash_64

if TYPE_CHECKING:
    from worker.store.transactions import Transactions

pytestmark = pytest.mark.anyio


@dataclass
class Backend:
    store: Any  # MessageStore or MemoryMessageStore: the same methods
    transactions: Transactions
    kind: str


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend(MemoryMessageStore(), MemoryTransactions(), "memory")
    pool = request.getfixturevalue("pool")
    return Backend(MessageStore(pool), PoolTransactions(pool), "postgres")


def msg(type_: str = "Happened", **data: Any) -> NewMessage:
    return NewMessage(type_, data)


def summary(messages: list[Any]) -> list[tuple[str, int, int, str, dict[str, Any]]]:
    return [(m.stream_name, m.position, m.global_position, m.type, m.data) for m in messages]


# -- writing --------------------------------------------------------------------------------


async def test_writes_number_stream_positions_from_zero_and_global_positions_from_one(
    backend: Backend,
) -> None:
    """Each stream counts its own positions; global positions count across streams."""
    store = backend.store
    assert await store.write("acct-1", msg(n=1)) == 0
    assert await store.write("acct-2", msg(n=2)) == 0
    assert await store.write("acct-1", msg(n=3)) == 1
    assert summary(await store.read_stream("acct-1")) == [
        ("acct-1", 0, 1, "Happened", {"n": 1}),
        ("acct-1", 1, 3, "Happened", {"n": 3}),
    ]
    assert await store.stream_version("acct-1") == 1
    assert await store.stream_version("acct-9") is None


async def test_a_message_reads_back_with_every_field(backend: Backend) -> None:
    """Id, type, data, metadata and a timezone-aware time; the engine's row indexes agree."""
    store = backend.store
    ident = str(uuid.uuid4())
    before = datetime.now(UTC) - timedelta(seconds=5)
    meta = {"correlationStreamName": "cart-1", "schemaVersion": 2}
    await store.write("acct-1", NewMessage("Opened", {"owner": "ann", "tags": [1]}, meta, ident))
    (m,) = await store.read_stream("acct-1")
    assert (m.id, m.stream_name, m.type, m.position, m.global_position) == (
        ident,
        "acct-1",
        "Opened",
        0,
        1,
    )
    assert m.data == {"owner": "ann", "tags": [1]} and m.metadata == meta
    assert (m[0], m[1], m[2], m[3], m[4]) == (ident, "acct-1", "Opened", 0, 1)
    assert m.time.tzinfo is not None and before < m.time < datetime.now(UTC) + timedelta(seconds=5)
    assert m.category == "acct"


async def test_metadata_none_reads_back_as_none(backend: Backend) -> None:
    """No metadata is NULL, not an empty object; an empty object stays one."""
    await backend.store.write("acct-1", NewMessage("A", {}, None))
    await backend.store.write("acct-1", NewMessage("B", {}, {}))
    first, second = await backend.store.read_stream("acct-1")
    assert (first.metadata, first.metadata_json) == (None, None)
    assert second.metadata == {}


async def test_expected_version_minus_one_means_no_stream_yet(backend: Backend) -> None:
    """-1 writes the first message; -1 on an existing stream fails with its version."""
    store = backend.store
    assert await store.write("acct-1", msg(), expected_version=-1) == 0
    with pytest.raises(ExpectedVersionError) as raised:
        await store.write("acct-1", msg(), expected_version=-1)
    assert (raised.value.stream_name, raised.value.expected, raised.value.actual) == (
        "acct-1",
        -1,
        0,
    )


async def test_a_wrong_expected_version_writes_nothing(backend: Backend) -> None:
    """A stale expected version raises ExpectedVersionError(stream, expected, actual)."""
    store = backend.store
    await store.write("acct-1", msg())
    await store.write("acct-1", msg(), expected_version=0)
    with pytest.raises(ExpectedVersionError) as raised:
        await store.write("acct-1", msg(), expected_version=0)
    assert (raised.value.expected, raised.value.actual) == (0, 1)
    with pytest.raises(ExpectedVersionError) as raised:
        await store.write("acct-2", msg(), expected_version=3)
    assert (raised.value.expected, raised.value.actual) == (3, -1)
    assert await store.stream_version("acct-1") == 1
    assert await store.stream_version("acct-2") is None


async def test_a_message_id_is_written_once(backend: Backend) -> None:
    """A second message with the same id is refused (MessageDB's unique index on id)."""
    ident = str(uuid.uuid4())
    await backend.store.write("acct-1", NewMessage("A", {}, id=ident))
    with pytest.raises(asyncpg.UniqueViolationError):
        await backend.store.write("acct-2", NewMessage("A", {}, id=ident))
    assert await backend.store.stream_version("acct-2") is None


async def test_a_message_id_must_be_a_uuid(backend: Backend) -> None:
    """MessageDB keeps ids as UUIDs: other text is refused."""
    with pytest.raises(asyncpg.InvalidTextRepresentationError):
        await backend.store.write("acct-1", NewMessage("A", {}, id="not-a-uuid"))


async def test_write_batch_writes_all_and_returns_the_last_position(backend: Backend) -> None:
    """A batch continues the stream from the expected version."""
    store = backend.store
    await store.write("acct-1", msg(n=0))
    last = await store.write_batch("acct-1", [msg(n=1), msg(n=2)], expected_version=0)
    assert last == 2
    assert [m.data["n"] for m in await store.read_stream("acct-1")] == [0, 1, 2]


async def test_write_batch_is_all_or_nothing(backend: Backend) -> None:
    """A batch whose third message cannot be written leaves no message of it behind."""
    store = backend.store
    taken = str(uuid.uuid4())
    await store.write("acct-9", NewMessage("A", {}, id=taken))
    batch = [msg(n=1), msg(n=2), NewMessage("A", {}, id=taken)]
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.write_batch("acct-1", batch)
    assert await store.read_stream("acct-1") == []
    with pytest.raises(ExpectedVersionError):
        await store.write_batch("acct-1", [msg(), msg()], expected_version=5)
    assert await store.read_stream("acct-1") == []


async def test_write_batch_needs_a_message(backend: Backend) -> None:
    with pytest.raises(ValueError, match="at least one message"):
        await backend.store.write_batch("acct-1", [])


async def test_writes_in_a_rolled_back_transaction_disappear(backend: Backend) -> None:
    """Every method joins the caller's transaction with conn=; a rollback removes the writes,
    and the global positions they took are not given again (a sequence)."""
    store = backend.store
    with pytest.raises(RuntimeError):
        async with backend.transactions.transaction() as conn:
            await store.write("acct-1", msg(n=1), conn=conn)
            await store.write_batch("acct-1", [msg(n=2), msg(n=3)], conn=conn)
            assert await store.stream_version("acct-1", conn=conn) == 2
            raise RuntimeError("roll back")
    assert await store.stream_version("acct-1") is None
    assert await store.category_head("acct") is None
    await store.write("acct-1", msg(n=4))
    (m,) = await store.read_stream("acct-1")
    assert (m.position, m.global_position) == (0, 4)


async def test_a_savepoint_undoes_only_its_own_writes(backend: Backend) -> None:
    """store.transaction(conn) inside a transaction is a savepoint."""
    store = backend.store
    async with backend.transactions.transaction() as conn:
        await store.write("acct-1", msg(n=1), conn=conn)
        with pytest.raises(ExpectedVersionError):
            async with store.transaction(conn) as inner:
                await store.write("acct-1", msg(n=2), conn=inner)
                await store.write("acct-1", msg(n=3), expected_version=7, conn=inner)
        await store.write("acct-1", msg(n=4), conn=conn)
    assert [m.data["n"] for m in await store.read_stream("acct-1")] == [1, 4]


async def test_a_failed_write_aborts_the_transaction(backend: Backend) -> None:
    """After a write failed in a transaction, nothing more runs in it, and it commits
    nothing (PostgreSQL's aborted transaction)."""
    store = backend.store
    async with backend.transactions.transaction() as conn:
        await store.write("acct-1", msg(n=1), conn=conn)
        with pytest.raises(ExpectedVersionError):
            await store.write("acct-1", msg(n=2), expected_version=5, conn=conn)
        with pytest.raises(asyncpg.InFailedSQLTransactionError):
            await store.write("acct-1", msg(n=3), conn=conn)
    assert await store.read_stream("acct-1") == []


async def test_store_transaction_of_its_own_commits_or_rolls_back(backend: Backend) -> None:
    """store.transaction() without conn opens a transaction of the store's own."""
    store = backend.store
    async with store.transaction() as conn:
        await store.write("acct-1", msg(n=1), conn=conn)
    with pytest.raises(RuntimeError):
        async with store.transaction() as conn:
            await store.write("acct-1", msg(n=2), conn=conn)
            raise RuntimeError("roll back")
    assert [m.data["n"] for m in await store.read_stream("acct-1")] == [1]


# -- reading --------------------------------------------------------------------------------


async def test_read_stream_from_a_position_in_batches(backend: Backend) -> None:
    """read_stream returns up to batch_size messages from a stream position; iter_stream
    pages through all of them."""
    store = backend.store
    for n in range(7):
        await store.write("acct-1", msg(n=n))
        await store.write("acct-2", msg(n=-n))
    assert [m.position for m in await store.read_stream("acct-1", 2, 3)] == [2, 3, 4]
    assert [m.position for m in await store.read_stream("acct-1", 6, 3)] == [6]
    assert await store.read_stream("acct-1", 7) == []
    assert [m.data["n"] async for m in store.iter_stream("acct-1", 1, 2)] == [1, 2, 3, 4, 5, 6]


async def test_read_category_in_global_order_from_a_position(backend: Backend) -> None:
    """A category's messages from a global position, up to batch_size, in global order; other
    categories (``acct:snapshot`` is one) are left out."""
    store = backend.store
    await store.write("acct-1", msg(n=1))  # 1
    await store.write("other-1", msg(n=2))  # 2
    await store.write("acct:snapshot-1", msg(n=3))  # 3
    await store.write("acct-2", msg(n=4))  # 4
    await store.write("acct-1", msg(n=5))  # 5
    everything = await store.read_category("acct")
    assert [m.global_position for m in everything] == [1, 4, 5]
    assert [m.global_position for m in await store.read_category("acct", 2)] == [4, 5]
    assert [m.global_position for m in await store.read_category("acct", 1, 2)] == [1, 4]
    assert [m.global_position for m in await store.read_category("acct:snapshot")] == [3]
    assert await store.read_category("acct", 6) == []
    assert await store.read_category("nothing") == []


async def test_read_category_keeps_messages_correlated_to_a_category(backend: Backend) -> None:
    """correlation= keeps messages whose correlationStreamName is in that category."""
    store = backend.store
    await store.write("acct-1", NewMessage("A", {}, {"correlationStreamName": "cart-1"}))
    await store.write("acct-2", NewMessage("A", {}, {"correlationStreamName": "checkout-2"}))
    await store.write("acct-3", NewMessage("A", {}, {"correlationStreamName": "cart"}))
    await store.write("acct-4", NewMessage("A", {}, {"other": "cart-1"}))
    await store.write("acct-5", NewMessage("A", {}, None))
    await store.write("acct-6", NewMessage("A", {}, {"correlationStreamName": "cart-9+x"}))
    found = await store.read_category("acct", correlation="cart")
    assert [m.stream_name for m in found] == ["acct-1", "acct-3", "acct-6"]
    assert [m.stream_name for m in await store.read_category("acct", correlation="checkout")] == [
        "acct-2"
    ]


IDS = [
    *(str(n) for n in range(40)),
    *(str(uuid.UUID(int=n * 7919 + 17)) for n in range(20)),
    "Ω",
    "order_77",
    "a:b",
    "x+y",
]


async def test_consumer_groups_split_a_category_by_the_hash_of_the_cardinal_id(
    backend: Backend,
) -> None:
    """For several group sizes, each member gets exactly the streams MessageDB's hash_64 of
    the cardinal id assigns to it; together they get every message once; streams with one
    cardinal id (``acct-7+a``, ``acct-7+b``) go to one member."""
    store = backend.store
    streams = [f"acct-{ident}" for ident in IDS] + ["acct-7+a", "acct-7+b"]
    for stream in streams:
        await store.write(stream, msg())
    for size in (1, 2, 3, 5, 8):
        seen: list[int] = []
        for member in range(size):
            got = await store.read_category(
                "acct", consumer_group_member=member, consumer_group_size=size
            )
            assert {m.stream_name for m in got} == {
                s for s in streams if group_member(s, size) == member
            }, (size, member)
            seen += [m.global_position for m in got]
        assert sorted(seen) == list(range(1, len(streams) + 1))
    assert group_member("acct-7+a", 5) == group_member("acct-7+b", 5) == group_member("acct-7", 5)


async def test_consumer_group_reads_combine_with_position_and_batch_size(backend: Backend) -> None:
    """A member's read starts at the position and stops at batch_size of its own messages."""
    store = backend.store
    for ident in IDS:
        await store.write(f"acct-{ident}", msg())
    mine = [
        n + 1 for n, ident in enumerate(IDS) if group_member(f"acct-{ident}", 3) == 1 and n >= 10
    ]
    got = await store.read_category("acct", 11, 4, consumer_group_member=1, consumer_group_size=3)
    assert [m.global_position for m in got] == mine[:4]


async def test_last_message_of_a_stream_and_of_a_type(backend: Backend) -> None:
    store = backend.store
    await store.write("acct-1", msg("Opened", n=1))
    await store.write("acct-1", msg("Deposited", n=2))
    await store.write("acct-1", msg("Deposited", n=3))
    await store.write("acct-1", msg("Closed", n=4))
    last = await store.last_message("acct-1")
    assert last is not None and (last.type, last.position) == ("Closed", 3)
    deposit = await store.last_message("acct-1", "Deposited")
    assert deposit is not None and deposit.data == {"n": 3}
    assert await store.last_message("acct-1", "Reopened") is None
    assert await store.last_message("acct-2") is None


async def test_message_at_a_global_position(backend: Backend) -> None:
    store = backend.store
    await store.write("acct-1", msg(n=1))
    await store.write("other-1", msg(n=2))
    found = await store.message_at(2)
    assert found is not None and (found.stream_name, found.data) == ("other-1", {"n": 2})
    assert await store.message_at(3) is None
    assert await store.message_at(0) is None


async def test_category_head_and_lag(backend: Backend) -> None:
    """The head is the category's newest global position; lag counts what lies after a
    position, with the oldest one's time."""
    store = backend.store
    assert await store.category_head("acct") is None
    assert await store.lag("acct", 0) == (0, None)
    await store.write("acct-1", msg())
    await store.write("other-1", msg())
    await store.write("acct-2", msg())
    assert await store.category_head("acct") == 3
    assert await store.category_head("other") == 2
    count, oldest = await store.lag("acct", 1)
    third = await store.message_at(3)
    assert third is not None and (count, oldest) == (1, third.time)
    assert (await store.lag("acct", 0))[0] == 2
    assert await store.lag("acct", 3) == (0, None)


# -- names and arguments ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["acct", "acct-", "-1", "acct 1-x", "acct-1\n", "", "a" * 501])
async def test_bad_stream_names_are_refused(backend: Backend, name: str) -> None:
    with pytest.raises(InvalidStreamNameError):
        await backend.store.write(name, msg())
    with pytest.raises(InvalidStreamNameError):
        await backend.store.read_stream(name)


async def test_bad_category_reads_are_refused(backend: Backend) -> None:
    store = backend.store
    with pytest.raises(InvalidStreamNameError):
        await store.read_category("acct-1")
    with pytest.raises(InvalidStreamNameError):
        await store.read_category("acct", correlation="cart-1")
    with pytest.raises(InvalidStreamNameError):
        await store.category_head("acct-1")
    with pytest.raises(ValueError, match="given together"):
        await store.read_category("acct", consumer_group_member=0)
    with pytest.raises(ValueError, match=r"must be in 0\.\.2"):
        await store.read_category("acct", consumer_group_member=3, consumer_group_size=3)
    with pytest.raises(ValueError, match="batch_size"):
        await store.read_category("acct", batch_size=0)


# -- MessageDB's hash, directly ----------------------------------------------------------------


async def test_hash_64_is_message_db_s(pool: asyncpg.Pool[Any]) -> None:
    """hash_64 gives the values of message_store.hash_64 (signed 64-bit) for many ids."""
    values = [*IDS, "", "-", "ü" * 40, str(uuid.uuid4())]
    expected = await pool.fetch(
        "SELECT v, message_store.hash_64(v) FROM unnest($1::text[]) AS v", values
    )
    assert {row[0]: row[1] for row in expected} == {v: hash_64(v) for v in values}
    assert any(hash_64(v) < 0 for v in values) and any(hash_64(v) > 0 for v in values)


async def test_lock_category_joins_the_callers_transaction(backend: Backend) -> None:
    """A category's lock taken ahead, in a transaction that then writes the category; a stream
    name MessageDB would not take is refused before any statement."""
    store = backend.store
    async with backend.transactions.transaction() as conn:
        await store.lock_category("acct-1", conn)
        await store.lock_category("acct-2", conn)  # (the same category: taken again)
        await store.write("acct-1", msg(n=1), conn=conn)
    assert [m.data for m in await store.read_stream("acct-1")] == [{"n": 1}]
    with pytest.raises(InvalidStreamNameError):
        async with backend.transactions.transaction() as conn:
            await store.lock_category("", conn)
