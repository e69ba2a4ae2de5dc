"""The testing kit's stand-ins on their own (no database): the read-model merge rules against
a one-change-at-a-time reference, in-memory transactions, and what each stand-in asserts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker import Increment, NewMessage, ReadModel
from worker.engine.dead_letters import Failure
from worker.testing import (
    InMemorySQLError,
    MemoryMessageStore,
    MemoryParkedMessages,
    MemoryPositionStore,
    MemoryReadModels,
    MemoryTable,
    MemoryTransactions,
    hash_64,
)

if TYPE_CHECKING:
    from worker.read.table import Table

pytestmark = pytest.mark.anyio


class Row(ReadModel):
    __table__ = "unit_rows"
    __key__ = "k"

    k: int
    a: int = 0
    b: str = ""
    n: int = 0


# -- merge rules ------------------------------------------------------------------------------

keys = st.integers(0, 4)
ops = st.one_of(
    st.tuples(st.just("put"), keys, st.integers(-5, 5), st.sampled_from(["x", "y"])),
    st.tuples(
        st.just("update"), keys, st.one_of(st.none(), st.integers(-5, 5)), st.integers(-2, 2)
    ),
    st.tuples(st.just("add"), keys, st.integers(-2, 2), st.one_of(st.none(), st.just("z"))),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("get"), keys),
)


def reference(rows: dict[int, dict[str, Any]], op: tuple[Any, ...]) -> Any:
    """One change applied at once to plain dicts: what each call means."""
    kind, key = op[0], op[1]
    if kind == "put":
        rows[key] = {"k": key, "a": op[2], "b": op[3], "n": 0}
    elif kind == "update" and key in rows:
        rows[key]["n"] += op[3]
        if op[2] is not None:
            rows[key]["a"] = op[2]
    elif kind == "add":
        row = rows.setdefault(key, {"k": key, "a": 0, "b": "", "n": 0})
        row["n"] += op[2]
        if op[3] is not None:
            row["b"] = op[3]
    elif kind == "delete":
        rows.pop(key, None)
    elif kind == "get":
        return dict(rows[key]) if key in rows else None
    return None


async def batched(table: Table, op: tuple[Any, ...]) -> Any:
    kind, key = op[0], op[1]
    if kind == "put":
        table.put(Row(k=key, a=op[2], b=op[3]))
    elif kind == "update":
        changes = {} if op[2] is None else {"a": op[2]}
        table.update_if_present(key, n=Increment(op[3]), **changes)
    elif kind == "add":
        table.add(key, n=Increment(op[2]), **({} if op[3] is None else {"b": op[3]}))
    elif kind == "delete":
        table.delete(key)
    else:
        row = await table.get(key)
        return None if row is None else row.model_dump()
    return None


@settings(max_examples=300, deadline=None)
@given(history=st.lists(ops, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=5))
def test_merged_batches_equal_one_change_at_a_time(
    history: list[tuple[Any, ...]], cuts: list[int]
) -> None:
    """However the changes are cut into batches, the merged writes (Table's own rules) give the
    rows, and get gives the reads, of applying each change on its own."""

    async def check() -> None:
        expected: dict[int, dict[str, Any]] = {}
        read_models, transactions = MemoryReadModels(), MemoryTransactions()
        bounds = sorted({0, len(history), *[c % (len(history) + 1) for c in cuts]})
        for start, end in itertools.pairwise(bounds):
            async with transactions.transaction() as conn:
                table = read_models(Row, 1, conn, lambda: 1)
                for op in history[start:end]:
                    assert await batched(table, op) == reference(expected, op)
                await table.flush()
        assert [r.model_dump() for r in read_models.rows(Row)] == [
            expected[k] for k in sorted(expected)
        ]

    anyio.run(check)


async def test_a_memory_table_on_its_own_commits_at_flush() -> None:
    """MemoryTable(Model) keeps rows of its own; rows() shows what was flushed."""
    table = MemoryTable(Row)
    table.put(Row(k=1, a=1))
    table.add(2, n=Increment(3))
    table.update_if_present(9, a=1)
    assert table.rows() == []
    await table.flush()
    assert table.rows() == [Row(k=1, a=1), Row(k=2, n=3)]
    table.delete(1)
    table.add(1, b="again")
    await table.flush()
    assert table.rows() == [Row(k=1, b="again"), Row(k=2, n=3)]
    assert table.stored.positions() == {1: 0, 2: 0}


async def test_read_models_give_rows_by_key_and_one_row() -> None:
    read_models = MemoryReadModels()
    seed = read_models.table(Row)
    seed.put(Row(k=3, a=3))
    seed.put(Row(k=1, a=1))
    await seed.flush()
    assert [r.k for r in read_models.rows(Row)] == [1, 3]
    assert read_models.by_key(Row)[3] == Row(k=3, a=3)
    assert read_models.row(Row, 1) == Row(k=1, a=1) and read_models.row(Row, 2) is None


# -- in-memory transactions --------------------------------------------------------------------


async def test_a_rollback_undoes_every_stand_in_s_changes() -> None:
    """One transaction over the message store, positions, parked messages and a table: an error
    undoes all of it."""
    store, positions, parked = MemoryMessageStore(), MemoryPositionStore(), MemoryParkedMessages()
    read_models, transactions = MemoryReadModels(), MemoryTransactions()
    await store.write("acct-1", NewMessage("A", {}))
    (message,) = await store.read_stream("acct-1")
    epoch = positions.take_lease("c")
    with pytest.raises(RuntimeError):
        async with transactions.transaction() as conn:
            await store.write("acct-2", NewMessage("B", {}), conn=conn)
            await positions.commit(conn, "c", 1, epoch, 0)
            await parked.park(conn, "c", message.as_message(), None)
            table = read_models(Row, 1, conn, lambda: 1)
            table.put(Row(k=1))
            await table.flush()
            raise RuntimeError("fail")
    assert [m.stream_name for m in store.messages()] == ["acct-1"]
    assert positions.position_of("c") is None and not parked.has("acct-1")
    assert read_models.rows(Row) == []
    assert (transactions.committed, transactions.rolled_back) == (0, 1)


async def test_sql_is_refused_and_remembered() -> None:
    transactions = MemoryTransactions()
    with pytest.raises(InMemorySQLError, match=r"ctx\.table"):
        async with transactions.transaction() as conn:
            await conn.fetchval("SELECT 1")
    assert isinstance(transactions.refused, InMemorySQLError)


async def test_an_ended_transaction_takes_no_more_changes() -> None:
    store, transactions = MemoryMessageStore(), MemoryTransactions()
    async with transactions.transaction() as conn:
        pass
    with pytest.raises(asyncpg.InterfaceError):
        await store.write("acct-1", NewMessage("A", {}), conn=conn)


async def test_a_stand_in_refuses_a_postgresql_connection() -> None:
    with pytest.raises(TypeError, match="in-memory transactions only"):
        await MemoryMessageStore().write("acct-1", NewMessage("A", {}), conn=object())  # type: ignore[arg-type]


# -- what the stand-ins assert -----------------------------------------------------------------


async def test_positions_answer_what_was_committed() -> None:
    """committed(consumer, position) and position_of(consumer); rolled-back commits are not
    counted."""
    positions, transactions = MemoryPositionStore(), MemoryTransactions()
    epoch = positions.take_lease("c")
    async with transactions.transaction() as conn:
        await positions.commit(conn, "c", 3, epoch, 0)
    with pytest.raises(RuntimeError):
        async with transactions.transaction() as conn:
            await positions.commit(conn, "c", 7, epoch, 3)
            raise RuntimeError("rolled back")
    assert positions.committed("c", 3) and not positions.committed("c", 7)
    assert positions.position_of("c") == 3 and positions.position_of("d") is None
    assert positions.history("c") == [3] and positions.positions() == {"c": 3}
    assert positions.epoch("c") == 1 and positions.epoch("d") is None


async def test_parked_messages_answer_what_was_parked() -> None:
    store, parked, transactions = MemoryMessageStore(), MemoryParkedMessages(), MemoryTransactions()
    for _ in range(2):
        await store.write("acct-1", NewMessage("A", {"n": 1}))
    first, second = (m.as_message() for m in await store.read_stream("acct-1"))
    error = ValueError("bad")
    async with transactions.transaction() as conn:
        await parked.park(conn, "c", first, Failure(error, 2, datetime.now(UTC)))
        await parked.park(conn, "c", second, None)
    assert parked.has("acct-1") and parked.has("acct-1", "c") and not parked.has("acct-1", "d")
    assert parked.failures("c") == [error]
    entries = parked.entries("c")
    assert [(e.position, e.error, e.blocked_by) for e in entries] == [
        (0, error, None),
        (1, None, entries[0].listing.id),
    ]
    assert entries[0].message.data == {"n": 1}
    assert [p.global_position for p in await parked.parked("c")] == [1, 2]


async def test_the_message_store_lists_what_was_written() -> None:
    store = MemoryMessageStore()
    await store.write("acct-1", NewMessage("A", {}))
    await store.write("cart-1", NewMessage("B", {}))
    await store.write("acct-2", NewMessage("C", {}))
    assert [m.type for m in store.messages()] == ["A", "B", "C"]
    assert [m.type for m in store.messages("acct")] == ["A", "C"]
    assert store.streams() == ["acct-1", "cart-1", "acct-2"]
    assert repr(store.messages()[0]).startswith("<Message acct-1@0 #1 A")


def test_hash_64_matches_message_db_s_values() -> None:
    """Values computed by PostgreSQL: ('x' || substr(md5(v), 1, 16))::bit(64)::bigint."""
    assert hash_64("1") == -4266524885998034046
    assert hash_64("order-1") == 7962229630616640349
    assert hash_64("abc") == -8070080442485551184
