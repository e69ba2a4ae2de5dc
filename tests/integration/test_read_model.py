"""Batched read-model writes equal one statement per event, on random histories."""

from __future__ import annotations

import itertools
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker import Increment, ReadModel
from worker.read.model import create_table_sql, physical
from worker.read.table import Table
from worker.store.database import create_pool

if TYPE_CHECKING:
    import asyncpg

pytestmark = pytest.mark.anyio


class Row(ReadModel):
    __table__ = "prop_rows"
    __key__ = "k"

    k: int
    a: int = 0
    b: str = ""
    n: int = 0


keys = st.integers(0, 5)
ops = st.one_of(
    st.tuples(
        st.just("put"), keys, st.integers(-5, 5), st.sampled_from(["x", "y"]), st.integers(0, 3)
    ),
    st.tuples(
        st.just("update"), keys, st.one_of(st.none(), st.integers(-5, 5)), st.integers(-2, 2)
    ),
    st.tuples(
        st.just("add"), keys, st.integers(-2, 2), st.one_of(st.none(), st.sampled_from(["z"]))
    ),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("get"), keys),
)


def apply_batched(table: Table, op: tuple[Any, ...]) -> Any:
    kind, key = op[0], op[1]
    if kind == "put":
        table.put(Row(k=key, a=op[2], b=op[3], n=op[4]))
    elif kind == "update":
        changes: dict[str, Any] = {"n": Increment(op[3])}
        if op[2] is not None:
            changes["a"] = op[2]
        table.update_if_present(key, **changes)
    elif kind == "add":
        changes = {"n": Increment(op[2])}
        if op[3] is not None:
            changes["b"] = op[3]
        table.add(key, **changes)
    elif kind == "delete":
        table.delete(key)
    return None


async def apply_direct(conn: Any, name: str, op: tuple[Any, ...]) -> None:
    kind, key = op[0], op[1]
    if kind == "put":
        await conn.execute(
            f"INSERT INTO {name} (k, a, b, n) VALUES ($1, $2, $3, $4) ON CONFLICT (k) DO UPDATE "
            "SET a = EXCLUDED.a, b = EXCLUDED.b, n = EXCLUDED.n",
            key,
            op[2],
            op[3],
            op[4],
        )
    elif kind == "update":
        await conn.execute(
            f"UPDATE {name} SET a = coalesce($2, a), n = n + $3 WHERE k = $1", key, op[2], op[3]
        )
    elif kind == "add":
        await conn.execute(
            f"INSERT INTO {name} (k, b, n) VALUES ($1, coalesce($3, ''), $2) ON CONFLICT (k) "
            f"DO UPDATE SET b = coalesce($3, {name}.b), n = {name}.n + $2",
            key,
            op[2],
            op[3],
        )
    elif kind == "delete":
        await conn.execute(f"DELETE FROM {name} WHERE k = $1", key)


async def rows(conn: Any, name: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await conn.fetch(f"SELECT k, a, b, n FROM {name} ORDER BY k")]


async def check(dsn: str, history: list[tuple[Any, ...]], cuts: list[int]) -> None:
    pool = await create_pool(dsn, max_size=2)
    generation = uuid.uuid4().int % 1_000_000 + 10
    batched, direct = physical(Row, generation), physical(Row, generation + 1)
    try:
        await pool.execute(create_table_sql(Row, generation))
        await pool.execute(create_table_sql(Row, generation + 1))
        position = 0

        def now() -> int:
            return position

        async with pool.acquire() as conn:
            bounds = sorted({0, len(history), *[c % (len(history) + 1) for c in cuts]})
            for start, end in itertools.pairwise(bounds):
                async with conn.transaction():
                    table = Table(Row, generation, conn, now)
                    for op in history[start:end]:
                        position += 1
                        if op[0] == "get":
                            await table.get(op[1])
                        else:
                            apply_batched(table, op)
                        await apply_direct(conn, direct, op)
                    await table.flush()
            assert await rows(conn, batched) == await rows(conn, direct)

            # Replaying any suffix in exact mode (as after a reset) changes nothing.
            final = await rows(conn, batched)
            replay_from = cuts[0] % (len(history) + 1) if cuts else 0
            position = replay_from
            async with conn.transaction():
                table = Table(Row, generation, conn, now, exact=True)
                for op in history[replay_from:]:
                    position += 1
                    if op[0] != "get":
                        apply_batched(table, op)
                await table.flush()
            assert await rows(conn, batched) == final
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {batched}, {direct}")
        await pool.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    history=st.lists(ops, min_size=1, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=4)
)
def test_batched_writes_equal_one_statement_per_event(
    database_dsn: str, history: list[tuple[Any, ...]], cuts: list[int]
) -> None:
    anyio.run(check, database_dsn, history, cuts)


def test_models_must_name_their_table_and_key() -> None:
    from worker.errors import RegistrationError

    class NoTable(ReadModel):
        __key__ = "k"
        k: int

    class BadKey(ReadModel):
        __table__ = "t"
        __key__ = "missing"
        k: int

    with pytest.raises(RegistrationError, match="no __table__"):
        NoTable.check()
    with pytest.raises(RegistrationError, match="key 'missing' is no field"):
        BadKey.check()


async def test_get_sees_the_batch_changes_and_loads_once(database_dsn: str) -> None:
    pool = await create_pool(database_dsn, max_size=1)
    try:
        await pool.execute(create_table_sql(Row, 1))
        await pool.execute(f"INSERT INTO {physical(Row, 1)} (k, a, b, n) VALUES (1, 5, 'x', 2)")
        async with pool.acquire() as conn, conn.transaction():
            table = Table(Row, 1, conn, lambda: 7)
            table.update(1, n=Increment(3))
            row = await table.get(1)
            assert row is not None and (row.a, row.n) == (5, 5)
            row.a = 9  # mutate the loaded row in place
            assert await table.get(1) is row
            assert await table.get(2) is None
            table.add(2, n=Increment(1))
            await table.flush()
        assert await rows(pool, physical(Row, 1)) == [(1, 9, "x", 5), (2, 0, "", 1)]
    finally:
        await pool.close()


async def test_unknown_columns_are_rejected(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        table = Table(Row, 1, conn, lambda: 1)
        with pytest.raises(ValueError, match=r"no column\(s\) \['c'\]"):
            table.update(1, c=2)
