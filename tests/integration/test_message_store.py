"""The message store client against the genuine MessageDB."""

from __future__ import annotations

import json
import uuid
from typing import Any

import anyio
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker import ExpectedVersionError, InvalidStreamNameError, Message, MessageStore, NewMessage

pytestmark = pytest.mark.anyio


def msg(type_: str = "Placed", **data: Any) -> NewMessage:
    return NewMessage(type=type_, data=data or {"n": 1})


async def test_write_returns_positions_and_reads_back_every_column(store: MessageStore) -> None:
    """A written message reads back with every MessageDB column, data decoded."""
    first = NewMessage("OrderPlaced", {"customer": "Alice"}, {"correlationStreamName": "x-1"})
    assert await store.write("order-1", first) == 0
    assert await store.write("order-1", msg("OrderConfirmed")) == 1

    [one, two] = await store.read_stream("order-1")
    assert isinstance(one, Message)
    assert one.id == first.id
    assert (one.stream_name, one.type, one.position) == ("order-1", "OrderPlaced", 0)
    assert one.data == {"customer": "Alice"}
    assert one.metadata == {"correlationStreamName": "x-1"}
    assert one.time.tzinfo is not None
    assert two.global_position > one.global_position
    assert two.category == "order"


async def test_expected_version_conflict_is_typed(store: MessageStore) -> None:
    """A wrong expected version raises ExpectedVersionError with stream, expected, actual."""
    await store.write("order-2", msg(), expected_version=-1)
    with pytest.raises(ExpectedVersionError) as caught:
        await store.write("order-2", msg(), expected_version=-1)
    assert (caught.value.stream_name, caught.value.expected, caught.value.actual) == (
        "order-2",
        -1,
        0,
    )
    assert await store.stream_version("order-2") == 0


async def test_two_concurrent_writers_exactly_one_wins(store: MessageStore) -> None:
    """Two writers with the same expected version: one commits, the other gets the error."""
    await store.write("order-3", msg())
    outcomes: list[object] = []

    async def writer(tag: str) -> None:
        try:
            await store.write("order-3", msg(tag=tag), expected_version=0)
            outcomes.append(tag)
        except ExpectedVersionError as error:
            outcomes.append(error)

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer, "a")
        tg.start_soon(writer, "b")

    winners = [o for o in outcomes if isinstance(o, str)]
    losers = [o for o in outcomes if isinstance(o, ExpectedVersionError)]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0].actual == 1
    messages = await store.read_stream("order-3")
    assert [m.data.get("tag") for m in messages] == [None, winners[0]]


async def test_write_batch_is_atomic_and_checks_version(store: MessageStore) -> None:
    """write_batch writes all in order, or nothing when the version is wrong."""
    last = await store.write_batch("order-4", [msg(i=i) for i in range(5)], expected_version=-1)
    assert last == 4
    with pytest.raises(ExpectedVersionError):
        await store.write_batch("order-4", [msg(i=i) for i in range(3)], expected_version=2)
    assert [m.data["i"] for m in await store.read_stream("order-4")] == [0, 1, 2, 3, 4]


async def test_write_batch_failing_midway_leaves_nothing(store: MessageStore) -> None:
    """A batch whose third message cannot be written rolls back the first two."""
    duplicate = str(uuid.uuid4())
    await store.write("other-1", NewMessage("X", {}, id=duplicate))
    batch = [msg(i=0), msg(i=1), NewMessage("X", {}, id=duplicate), msg(i=3)]
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.write_batch("order-5", batch)
    assert await store.read_stream("order-5") == []
    assert await store.stream_version("order-5") is None


async def test_write_batch_joins_callers_transaction(
    store: MessageStore, pool: asyncpg.Pool[Any]
) -> None:
    """With conn=, the writes commit or roll back with the caller's transaction."""
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await store.write_batch("order-6", [msg(), msg()], conn=conn)
                raise RuntimeError("abort")
    assert await store.read_stream("order-6") == []


async def test_read_stream_in_batches_from_position(store: MessageStore) -> None:
    """Batches of a stream respect position and batch_size; iter_stream reads everything."""
    await store.write_batch("order-7", [msg(i=i) for i in range(25)])
    batch = await store.read_stream("order-7", position=10, batch_size=7)
    assert [m.position for m in batch] == list(range(10, 17))
    assert await store.read_stream("order-7", position=25) == []
    everything = [m.position async for m in store.iter_stream("order-7", batch_size=10)]
    assert everything == list(range(25))
    exact = [m.position async for m in store.iter_stream("order-7", batch_size=5)]
    assert exact == list(range(25))


async def test_read_category_batches_and_boundaries(store: MessageStore) -> None:
    """Category reads are in global order, start at the given position, stop at batch_size."""
    for i in range(12):
        await store.write(f"cart-{i % 3}", msg(i=i))
    await store.write("other-1", msg())
    everything = await store.read_category("cart")
    assert [m.data["i"] for m in everything] == list(range(12))
    positions = [m.global_position for m in everything]
    assert positions == sorted(positions)

    middle = positions[5]
    batch = await store.read_category("cart", position=middle, batch_size=4)
    assert [m.global_position for m in batch] == positions[5:9]
    assert await store.read_category("cart", position=positions[-1] + 1) == []
    assert await store.category_head("cart") == positions[-1]
    assert await store.category_head("nothing") is None


async def test_read_category_matches_get_category_messages(
    store: MessageStore, pool: asyncpg.Pool[Any]
) -> None:
    """The static SELECT returns exactly what MessageDB's own function returns."""
    for i in range(30):
        meta = {"correlationStreamName": f"{'flow' if i % 2 else 'else'}-{i}"}
        await store.write(f"ticket-{i % 7}+{i % 2}", NewMessage("T", {"i": i}, meta))
    for member, size, correlation in [(None, None, None), (1, 3, None), (0, 2, "flow")]:
        ours = await store.read_category(
            "ticket",
            position=3,
            batch_size=20,
            correlation=correlation,
            consumer_group_member=member,
            consumer_group_size=size,
        )
        rows = await pool.fetch(
            "SELECT id, global_position "
            "FROM message_store.get_category_messages($1, $2, $3, $4, $5, $6)",
            "ticket",
            3,
            20,
            correlation,
            member,
            size,
        )
        assert [(m.id, m.global_position) for m in ours] == [
            (r["id"], r["global_position"]) for r in rows
        ]
        assert ours


async def test_correlation_filter(store: MessageStore) -> None:
    """Only messages whose correlationStreamName is in the given category come back."""
    await store.write("payment-1", NewMessage("P", {"i": 1}, {"correlationStreamName": "order-9"}))
    await store.write("payment-2", NewMessage("P", {"i": 2}, {"correlationStreamName": "cart-9"}))
    await store.write("payment-3", NewMessage("P", {"i": 3}))
    found = await store.read_category("payment", correlation="order")
    assert [m.data["i"] for m in found] == [1]
    with pytest.raises(InvalidStreamNameError):
        await store.read_category("payment", correlation="order-9")


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ids=st.lists(
        st.text(
            st.characters(codec="utf-8", exclude_characters="-+\x00"), min_size=1, max_size=8
        ).filter(lambda s: s.isprintable() and not any(c.isspace() for c in s)),
        min_size=1,
        max_size=20,
        unique=True,
    ),
    size=st.integers(1, 8),
)
def test_consumer_groups_partition_the_category(
    database_dsn: str, ids: list[str], size: int
) -> None:
    """Every stream lands in exactly one member; the members' union is the whole category."""

    async def check() -> None:
        from worker.store.database import create_pool

        category = f"grp{uuid.uuid4().hex[:8]}"
        pool = await create_pool(database_dsn, max_size=2)
        try:
            store = MessageStore(pool)
            for ident in ids:
                await store.write(f"{category}-{ident}", msg())
                await store.write(f"{category}-{ident}+extra", msg())
            everything = await store.read_category(category)
            seen: dict[str, int] = {}
            union: list[int] = []
            for member in range(size):
                part = await store.read_category(
                    category, consumer_group_member=member, consumer_group_size=size
                )
                union.extend(m.global_position for m in part)
                for m in part:
                    cardinal = m.stream_name.split("-", 1)[1].split("+", 1)[0]
                    assert seen.setdefault(cardinal, member) == member
            assert sorted(union) == [m.global_position for m in everything]
            assert set(seen) == set(ids)
        finally:
            await pool.close()

    anyio.run(check)


async def test_consumer_group_arguments_are_checked(store: MessageStore) -> None:
    with pytest.raises(ValueError, match="together"):
        await store.read_category("x", consumer_group_member=0)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        await store.read_category("x", consumer_group_member=2, consumer_group_size=2)


async def test_unicode_and_one_megabyte_payloads(store: MessageStore) -> None:
    """Non-ASCII text and a 1 MB payload round-trip unchanged."""
    text = "Zoë 東京 🚀 \u202e ∑"
    big = "x" * (1024 * 1024)
    await store.write("doc-ü", NewMessage("Ü", {"text": text, "big": big}, {"note": text}))
    [back] = await store.read_stream("doc-ü")
    assert back.type == "Ü"
    assert back.data["text"] == text and back.data["big"] == big
    assert back.metadata == {"note": text}
    assert len(json.dumps(back.data)) > 1024 * 1024


async def test_last_message_and_stream_version(store: MessageStore) -> None:
    assert await store.last_message("order-8") is None
    assert await store.stream_version("order-8") is None
    await store.write_batch("order-8", [msg("A"), msg("B"), msg("A", n=2), msg("C")])
    last = await store.last_message("order-8")
    assert last is not None and last.type == "C" and last.position == 3
    last_a = await store.last_message("order-8", type="A")
    assert last_a is not None and last_a.position == 2 and last_a.data == {"n": 2}
    assert await store.stream_version("order-8") == 3


@pytest.mark.parametrize(
    "name", ["", "order", "-1", "order-", "ord er-1", "order-1\n", "a" * 501 + "-1"]
)
async def test_bad_stream_names_are_rejected_before_sql(store: MessageStore, name: str) -> None:
    with pytest.raises(InvalidStreamNameError):
        await store.write(name, msg())


@pytest.mark.parametrize("name", ["", "order-1", "a b"])
async def test_bad_categories_are_rejected(store: MessageStore, name: str) -> None:
    with pytest.raises(InvalidStreamNameError):
        await store.read_category(name)


async def test_hostile_names_are_data_not_sql(store: MessageStore) -> None:
    """Quotes and SQL in names are stored as text, never executed."""
    name = "evil'); DROP TABLE message_store.messages; --x-1"
    with pytest.raises(InvalidStreamNameError):
        await store.write(name, msg())
    name = "evil';DROP_TABLE-1"
    await store.write(name, msg())
    assert [m.stream_name for m in await store.read_category("evil';DROP_TABLE")] == [name]
