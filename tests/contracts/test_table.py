"""The read-model table's contract: MemoryTable and Table on PostgreSQL give the same rows for
the same changes (each test runs against both; a last test compares them on random
histories)."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import itertools
import math
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from worker import Increment, ReadModel
from worker.errors import MissingRowError
from worker.read.model import POSITION_COLUMN, create_table_sql, physical
from worker.read.table import Table
from worker.store.database import create_pool
from worker.store.transactions import PoolTransactions
from worker.testing import MemoryReadModels, MemoryTransactions

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from worker.read.table import TableFactory
    from worker.store.transactions import Transactions

pytestmark = pytest.mark.anyio


class Row(ReadModel):
    __table__ = "contract_rows"
    __key__ = "k"

    k: int
    a: int = 0
    b: str = ""
    n: int = 0
    bonus: int | None = None


class Level(enum.StrEnum):
    LOW = "low"
    HIGH = "high"


class Detail(BaseModel):
    note: str
    weights: list[float] = []


class Tag(ReadModel):
    __table__ = "contract_tags"
    __key__ = ("owner", "name")

    owner: str
    name: str
    level: Level = Level.LOW
    uses: int = 0
    labels: list[str] = []  # noqa: RUF012 (pydantic copies field defaults)
    detail: Detail | None = None


class Account(ReadModel):
    __table__ = "contract_accounts"
    __key__ = "id"

    id: str
    owner: str  # no default: a row needs it
    balance: int = 0


@dataclass
class Backend:
    kind: str
    transactions: Transactions
    tables: TableFactory
    read_models: MemoryReadModels | None = None
    pool: asyncpg.Pool[Any] | None = None
    at: int = 1  # the global position of the message making the next change
    created: set[type[ReadModel]] = field(default_factory=set)

    @contextlib.asynccontextmanager
    async def batch(self, model: type[ReadModel], *, exact: bool = False) -> AsyncIterator[Table]:
        """A batch's unit of work on ``model``, flushed and committed at the end."""
        await self._create(model)
        async with self.transactions.transaction() as conn:
            table = self.tables(model, 1, conn, lambda: self.at, exact=exact)
            yield table
            await table.flush()

    async def rows(self, model: type[ReadModel]) -> list[tuple[Any, int]]:
        """(row, stored position) of every row, by key."""
        await self._create(model)
        if self.read_models is not None:
            stored = self.read_models.stored(model)
            return [
                (model.model_validate(stored.data[k][0]), stored.data[k][1])
                for k in stored.sorted_keys()
            ]
        assert self.pool is not None
        found = []
        for record in await self.pool.fetch(f"SELECT * FROM {physical(model, 1)}"):
            values = dict(record)
            position = values.pop(POSITION_COLUMN)
            found.append((model.model_validate(values), position))
        return sorted(found, key=lambda found: found[0].key())

    async def _create(self, model: type[ReadModel]) -> None:
        if self.pool is not None and model not in self.created:
            await self.pool.execute(create_table_sql(model, 1))
            self.created.add(model)


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        read_models = MemoryReadModels()
        return Backend("memory", MemoryTransactions(), read_models, read_models=read_models)
    pool = request.getfixturevalue("pool")
    return Backend("postgres", PoolTransactions(pool), Table, pool=pool)


async def test_put_inserts_or_replaces_the_whole_row(backend: Backend) -> None:
    async with backend.batch(Row) as t:
        t.put(Row(k=1, a=1, b="x", n=1))
        t.put(Row(k=2, a=2))
    backend.at = 2
    async with backend.batch(Row) as t:
        t.put(Row(k=1, b="y"))
    assert await backend.rows(Row) == [(Row(k=1, b="y"), 2), (Row(k=2, a=2), 1)]


async def test_update_changes_columns_of_an_existing_row(backend: Backend) -> None:
    """update sets columns and adds Increments."""
    async with backend.batch(Row) as t:
        t.put(Row(k=1, a=1, n=10))
    backend.at = 5
    async with backend.batch(Row) as t:
        t.update(1, a=7, n=Increment(3))
    assert await backend.rows(Row) == [(Row(k=1, a=7, n=13), 5)]


async def test_update_of_a_missing_row_fails_naming_the_model_and_the_key(
    backend: Backend,
) -> None:
    """An update of a row that does not exist is an error (found at the flush, with no extra
    round trip while the batch goes well): the batch writes nothing."""
    async with backend.batch(Row) as t:
        t.put(Row(k=1, a=1))
    with pytest.raises(MissingRowError, match=r"^Row: no row with key 2 to update"):
        async with backend.batch(Row) as t:
            t.update(1, a=7)
            t.update(2, a=7, n=Increment(3))
    assert await backend.rows(Row) == [(Row(k=1, a=1), 1)]


async def test_update_of_a_row_known_missing_fails_at_once(backend: Backend) -> None:
    """An update of a row the batch deleted, or read as missing, fails in the handler's call."""
    async with backend.batch(Row) as t:
        t.delete(1)
        with pytest.raises(MissingRowError, match=r"^Row: no row with key 1 to update"):
            t.update(1, a=1)
        assert await t.get(2) is None
        with pytest.raises(MissingRowError, match=r"^Row: no row with key 2 to update"):
            t.update(2, a=1)


async def test_update_if_present_ignores_a_missing_row(backend: Backend) -> None:
    """update_if_present changes an existing row like update; a missing row stays missing."""
    async with backend.batch(Row) as t:
        t.put(Row(k=1, a=1, n=10))
    backend.at = 5
    async with backend.batch(Row) as t:
        t.update_if_present(1, a=7, n=Increment(3))
        t.update_if_present(2, a=7, n=Increment(3))
        t.delete(3)
        t.update_if_present(3, a=1)
    assert await backend.rows(Row) == [(Row(k=1, a=7, n=13), 5)]


async def test_an_exact_batch_skips_an_update_of_a_missing_row(backend: Backend) -> None:
    """After a reset, a replayed update of a row that is gone (deleted by a later message) is
    skipped: the history it belongs to went well the first time."""
    async with backend.batch(Row, exact=True) as t:
        t.update(1, a=1)
    assert await backend.rows(Row) == []


async def test_add_creates_a_missing_row_from_the_defaults(backend: Backend) -> None:
    """add changes an existing row like update, and creates a missing one (its other columns
    at their defaults, an Increment as the value)."""
    async with backend.batch(Row) as t:
        t.put(Row(k=1, a=1, n=10))
    backend.at = 2
    async with backend.batch(Row) as t:
        t.add(1, n=Increment(2), b="seen")
        t.add(2, n=Increment(2))
        t.add(3, a=4)
    assert await backend.rows(Row) == [
        (Row(k=1, a=1, b="seen", n=12), 2),
        (Row(k=2, n=2), 2),
        (Row(k=3, a=4), 2),
    ]


async def test_changes_of_one_key_in_one_batch_merge(backend: Backend) -> None:
    """A set after an Increment wins; an Increment after a set adds to it; repeated
    Increments add up; the row's position is its last change's."""
    async with backend.batch(Row) as t:
        t.put(Row(k=1))
        t.put(Row(k=2))
    async with backend.batch(Row) as t:
        backend.at = 3
        t.update(1, n=Increment(5))
        backend.at = 4
        t.update(1, n=100)
        t.update(2, n=100)
        backend.at = 6
        t.update(2, n=Increment(5))
        t.update(2, n=Increment(-1), a=Increment(2))
    assert await backend.rows(Row) == [(Row(k=1, n=100), 4), (Row(k=2, a=2, n=104), 6)]


async def test_an_update_before_an_add_counts_only_if_the_row_existed(backend: Backend) -> None:
    """update_if_present then add in one batch: on an existing row both apply; on a missing one
    the update does nothing and the add creates the row."""
    async with backend.batch(Row) as t:
        t.put(Row(k=1, n=1))
    async with backend.batch(Row) as t:
        for key in (1, 2):
            t.update_if_present(key, n=Increment(10), a=5)
            t.add(key, n=Increment(1))
    assert [r for r, _ in await backend.rows(Row)] == [Row(k=1, a=5, n=12), Row(k=2, n=1)]


async def test_an_update_of_a_missing_row_before_an_add_fails(backend: Backend) -> None:
    """update then add of a missing row in one batch: the update is an error, though the add
    would have created the row."""
    with pytest.raises(MissingRowError, match=r"^Row: no row with key 2 to update"):
        async with backend.batch(Row) as t:
            t.update(2, n=Increment(10))
            t.add(2, n=Increment(1))
    assert await backend.rows(Row) == []


async def test_delete_then_add_starts_a_new_row(backend: Backend) -> None:
    """A row deleted and added again in one batch starts from the defaults; one deleted and
    put again is the row put."""
    async with backend.batch(Row) as t:
        t.put(Row(k=1, a=9, b="old", n=9))
        t.put(Row(k=2, a=9, b="old", n=9))
        t.put(Row(k=3, a=9))
    async with backend.batch(Row) as t:
        t.delete(1)
        t.add(1, n=Increment(1))
        t.delete(2)
        t.put(Row(k=2, b="new"))
        t.delete(3)
        t.update_if_present(3, a=1)
    assert [r for r, _ in await backend.rows(Row)] == [Row(k=1, n=1), Row(k=2, b="new")]


async def test_delete_removes_a_row_and_ignores_a_missing_one(backend: Backend) -> None:
    async with backend.batch(Row) as t:
        t.put(Row(k=1))
        t.put(Row(k=2))
    async with backend.batch(Row) as t:
        t.delete(1)
        t.delete(7)
    assert [r.k for r, _ in await backend.rows(Row)] == [2]


async def test_get_sees_the_stored_row_with_the_batch_s_changes(backend: Backend) -> None:
    """get returns the row as of the batch's changes: stored values plus pending ones, the row
    put, None for a missing or deleted row; load fetches many at once."""
    async with backend.batch(Row) as t:
        t.put(Row(k=1, a=1, n=1))
        t.put(Row(k=2, a=2))
    async with backend.batch(Row) as t:
        t.update(1, n=Increment(4))
        assert await t.get(1) == Row(k=1, a=1, n=5)
        t.update(1, a=Increment(1))
        assert await t.get(1) == Row(k=1, a=2, n=5)
        t.put(Row(k=3, b="put"))
        assert await t.get(3) == Row(k=3, b="put")
        assert await t.get(4) is None
        t.add(4, n=Increment(1))
        assert await t.get(4) == Row(k=4, n=1)
        t.delete(2)
        assert await t.get(2) is None
        await t.load([1, 2, 5])
        assert await t.get(5) is None
    assert [r for r, _ in await backend.rows(Row)] == [
        Row(k=1, a=2, n=5),
        Row(k=3, b="put"),
        Row(k=4, n=1),
    ]


async def test_an_exact_batch_skips_changes_the_row_already_has(backend: Backend) -> None:
    """After a reset, changes from messages at or below a row's stored position are skipped,
    so replaying a message never changes a row twice."""
    async with backend.batch(Row) as t:
        for backend.at in (1, 2, 3):
            t.add(1, n=Increment(1))
        t.add(2, n=Increment(1))
    async with backend.batch(Row, exact=True) as t:
        for backend.at in (2, 3, 4, 5):
            t.add(1, n=Increment(1))
            t.add(2, n=Increment(1))
    assert await backend.rows(Row) == [(Row(k=1, n=5), 5), (Row(k=2, n=3), 5)]


async def test_an_increment_of_a_null_column_stays_null(backend: Backend) -> None:
    """As in SQL: NULL + n is NULL."""
    async with backend.batch(Row) as t:
        t.put(Row(k=1))
        t.put(Row(k=2, bonus=1))
    async with backend.batch(Row) as t:
        t.update(1, bonus=Increment(5))
        t.update(2, bonus=Increment(5))
    assert [r.bonus for r, _ in await backend.rows(Row)] == [None, 6]


async def test_a_rolled_back_batch_changes_nothing(backend: Backend) -> None:
    async with backend.batch(Row) as t:
        t.put(Row(k=1, n=1))
    with pytest.raises(RuntimeError):
        async with backend.batch(Row) as t:
            t.update(1, n=Increment(1))
            t.put(Row(k=2))
            await t.flush()
            raise RuntimeError("the position commit failed")
    assert [r for r, _ in await backend.rows(Row)] == [Row(k=1, n=1)]


async def test_a_new_row_needs_every_column_without_a_default(backend: Backend) -> None:
    """add of a missing row leaves columns it does not name at their defaults; a column with
    none fails the flush (not null)."""
    with pytest.raises(asyncpg.NotNullViolationError):
        async with backend.batch(Account) as t:
            t.add("a1", balance=Increment(5))
    async with backend.batch(Account) as t:
        t.add("a1", owner="ann", balance=Increment(5))
        t.add("a1", balance=Increment(1))
    assert [r for r, _ in await backend.rows(Account)] == [Account(id="a1", owner="ann", balance=6)]


async def test_composite_keys_json_and_enum_columns(backend: Backend) -> None:
    """A key of two columns; lists and nested models (JSON) and enums read back as put."""
    detail = Detail(note="n", weights=[0.5, 2.0])
    async with backend.batch(Tag) as t:
        t.put(Tag(owner="ann", name="x", level=Level.HIGH, labels=["a", "b"], detail=detail))
        t.put(Tag(owner="bob", name="x"))
    async with backend.batch(Tag) as t:
        t.update(("ann", "x"), uses=Increment(2), labels=["c"])
        t.update(("bob", "x"), level=Level.HIGH)
        assert await t.get(("ann", "x")) == Tag(
            owner="ann", name="x", level=Level.HIGH, uses=2, labels=["c"], detail=detail
        )
    assert [r for r, _ in await backend.rows(Tag)] == [
        Tag(owner="ann", name="x", level=Level.HIGH, uses=2, labels=["c"], detail=detail),
        Tag(owner="bob", name="x", level=Level.HIGH),
    ]


async def test_a_new_row_takes_the_models_defaults_even_those_the_table_cannot_hold(
    backend: Backend,
) -> None:
    """The table's DDL carries only plain literal defaults (a list is not one), but a row an
    ``add`` creates takes the model's defaults for every column it does not name; an existing
    row keeps what it holds."""
    async with backend.batch(Tag) as t:
        t.add(("cy", "y"), uses=Increment(1))
    assert [r for r, _ in await backend.rows(Tag)] == [Tag(owner="cy", name="y", uses=1)]
    async with backend.batch(Tag) as t:
        t.update(("cy", "y"), labels=["kept"])
    async with backend.batch(Tag) as t:
        t.add(("cy", "y"), uses=Increment(1))
        t.add(("di", "z"), level=Level.HIGH)
    assert [r for r, _ in await backend.rows(Tag)] == [
        Tag(owner="cy", name="y", uses=2, labels=["kept"]),
        Tag(owner="di", name="z", level=Level.HIGH),
    ]


class Stamped(ReadModel):
    __table__ = "contract_stamped"
    __key__ = "id"

    id: str
    seen: int = 0
    tags: list[str] = Field(default_factory=lambda: ["new"])


async def test_a_default_factory_gives_a_new_row_its_value(backend: Backend) -> None:
    async with backend.batch(Stamped) as t:
        t.add("s1", seen=Increment(1))
    async with backend.batch(Stamped) as t:
        t.add("s1", seen=Increment(1))
        t.delete("s2")
        t.add("s2", seen=Increment(3))
    assert [r for r, _ in await backend.rows(Stamped)] == [
        Stamped(id="s1", seen=2, tags=["new"]),
        Stamped(id="s2", seen=3, tags=["new"]),
    ]


async def test_changes_out_of_global_order_keep_the_newest_position(backend: Backend) -> None:
    """Partitions of a concurrent batch change rows out of global order: a row keeps the
    newest change's position, so replaying the messages after a reset changes it no more."""

    async def changes(table: Table) -> None:
        backend.at = 7
        table.add(1, n=Increment(1))  # a patch, then a change merged into it
        table.put(Row(k=2, a=1))  # a whole row, then a change applied to it
        backend.at = 5
        table.add(1, n=Increment(1))
        table.update(2, n=Increment(1))

    async with backend.batch(Row) as t:
        await changes(t)
    expected = [(Row(k=1, n=2), 7), (Row(k=2, a=1, n=1), 7)]
    assert await backend.rows(Row) == expected
    async with backend.batch(Row, exact=True) as t:
        await changes(t)
    assert await backend.rows(Row) == expected

    async def replayed(table: Table) -> None:  # exact mode: changes resolved once loaded
        backend.at = 9
        table.add(3, n=Increment(1))
        backend.at = 8
        table.add(3, n=Increment(1))

    for _ in range(2):
        async with backend.batch(Row, exact=True) as t:
            await replayed(t)
        assert (await backend.rows(Row))[2] == (Row(k=3, n=2), 9)


async def test_unknown_columns_are_refused(backend: Backend) -> None:
    async with backend.batch(Row) as t:
        with pytest.raises(ValueError, match=r"no column\(s\) \['c'\]"):
            t.update(1, c=2)
        with pytest.raises(TypeError, match="put expects a Row"):
            t.put(Account(id="x", owner="y"))  # type: ignore[arg-type]


# -- both, on random histories -----------------------------------------------------------------

keys = st.integers(0, 4)
ops = st.one_of(
    st.tuples(st.just("put"), keys, st.integers(-5, 5), st.sampled_from(["x", "y"])),
    st.tuples(
        st.just("update"), keys, st.one_of(st.none(), st.integers(-5, 5)), st.integers(-2, 2)
    ),
    st.tuples(st.just("add"), keys, st.integers(-2, 2), st.one_of(st.none(), st.just("z"))),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("get"), keys),
    st.tuples(st.just("strict"), keys, st.integers(-2, 2)),  # update: the row must exist
)


async def apply(table: Table, op: tuple[Any, ...]) -> Any:
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
    elif kind == "strict":
        table.update(key, n=Increment(op[2]))
    else:
        row = await table.get(key)
        return None if row is None else row.model_dump()
    return None


async def replay(
    backend: Backend, history: list[tuple[Any, ...]], cuts: list[int], reset: int
) -> tuple[list[Any], list[Any], list[Any]]:
    """Apply ``history`` in batches cut at ``cuts``, then again from ``reset`` in exact mode;
    what get returned (and the batches an update of a missing row failed), and the rows after
    each pass."""
    seen: list[Any] = []
    bounds = sorted({0, len(history), *[c % (len(history) + 1) for c in cuts]})
    for start, end in itertools.pairwise(bounds):
        backend.at = start
        try:
            async with backend.batch(Row) as table:
                for op in history[start:end]:
                    backend.at += 1
                    seen.append(await apply(table, op))
        except MissingRowError as error:  # the batch wrote nothing
            seen.append(str(error))
    first = await backend.rows(Row)
    backend.at = reset % (len(history) + 1)
    async with backend.batch(Row, exact=True) as table:
        for op in history[backend.at :]:
            backend.at += 1
            await apply(table, op)
    return seen, first, await backend.rows(Row)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    history=st.lists(ops, min_size=1, max_size=30),
    cuts=st.lists(st.integers(0, 30), max_size=4),
    reset=st.integers(0, 30),
)
def test_memory_and_postgres_agree_on_random_histories(
    database_dsn: str, history: list[tuple[Any, ...]], cuts: list[int], reset: int
) -> None:
    """The same changes in the same batches (and replayed after a reset) give the same rows,
    positions and reads in memory as in PostgreSQL."""

    async def check() -> None:
        pool = await create_pool(database_dsn, max_size=2)
        try:
            await pool.execute(f"DROP TABLE IF EXISTS {physical(Row, 1)}")
            read_models = MemoryReadModels()
            memory = Backend("memory", MemoryTransactions(), read_models, read_models=read_models)
            postgres = Backend("postgres", PoolTransactions(pool), Table, pool=pool)
            assert await replay(memory, history, cuts, reset) == await replay(
                postgres, history, cuts, reset
            )
        finally:
            await pool.close()

    anyio.run(check)


class Typed(ReadModel):
    __table__ = "contract_typed"
    __key__ = "id"

    id: uuid.UUID
    flag: bool = False
    count: int = 0
    ratio: float = 0.0
    amount: Decimal = Decimal(0)
    at: dt.datetime | None = None
    day: dt.date | None = None
    level: Level = Level.LOW
    notes: dict[str, Any] = {}  # noqa: RUF012 (pydantic copies field defaults)


async def test_every_column_type_reads_back_exactly_as_written(backend: Backend) -> None:
    """Whole rows (put) and patches (update, add) of every column type read back as written:
    exact decimals, floats with NaN and infinities, microseconds and time zones, dates, UUIDs,
    enums, JSON with nested decimals as text."""
    one, two, three = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)
    paris = dt.timezone(dt.timedelta(hours=1))
    first = Typed(
        id=one,
        flag=True,
        count=2**62,
        ratio=0.1,
        amount=Decimal("12345678901234567890.000000000001"),
        at=dt.datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=paris),
        day=dt.date(2025, 12, 31),
        level=Level.HIGH,
        notes={"a": [1, 2.5, None], "b": {"c": "d"}},
    )
    async with backend.batch(Typed) as t:
        t.put(first)
        t.put(Typed(id=two, ratio=float("nan")))
    async with backend.batch(Typed) as t:
        t.update(
            two,
            ratio=float("inf"),
            amount=Decimal("-0.5"),
            at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        )
        t.update(two, count=Increment(-3), level=Level.HIGH, day=dt.date(2000, 2, 29))
        t.add(three, ratio=float("-inf"), notes={"n": Decimal("1.10")}, count=Increment(1))
    rows = {r.id: r for r, _ in await backend.rows(Typed)}
    assert rows[one] == first
    assert rows[one].at is not None and rows[one].at.utcoffset() is not None
    second = rows[two]
    assert second.ratio == float("inf")
    assert (second.amount, second.count, second.level) == (Decimal("-0.5"), -3, Level.HIGH)
    assert second.at == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    assert second.day == dt.date(2000, 2, 29)
    third = rows[three]
    assert third.ratio == float("-inf")
    assert (third.count, third.notes) == (1, {"n": "1.10"})
    async with backend.batch(Typed) as t:
        t.update(one, ratio=float("nan"))
    (nan,) = [r.ratio for r, _ in await backend.rows(Typed) if r.id == one]
    assert math.isnan(nan)
