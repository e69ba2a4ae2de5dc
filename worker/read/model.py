"""Read models: a pydantic model per row, tables created by the worker, batched writes.

A projector's handlers change rows through ``ctx.table(Model)``: ``put`` (whole row), ``update``
(some columns, ``Increment`` for counters), ``add`` (counters, creating the row if needed),
``delete`` and ``await get``. Changes are merged per key in memory and reach PostgreSQL at the
end of the batch in a few set-based statements (many rows each), inside the batch's transaction.

Every read model lives in a physical table ``{table}__g{generation}``; a view named ``{table}``
points at the live generation, so a rebuild can fill the next generation while readers keep
reading the old one, then switch by replacing the view (see ``worker.projection``).

Both live in the read-model schema, the first on every worker connection's search path (see
``worker.read_schema``), unless the model names a schema of its own in ``__schema__``. A table
named like one of MessageDB's objects is refused: MessageDB's functions would use it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import types
import typing
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict

from worker.errors import RegistrationError
from worker.store.read_schema import is_reserved

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self

    from worker.store.types import Connection, Executor

_SCALARS: dict[type, str] = {
    bool: "boolean",
    int: "bigint",
    float: "double precision",
    str: "text",
    decimal.Decimal: "numeric",
    dt.datetime: "timestamptz",
    dt.date: "date",
    uuid.UUID: "uuid",
}


def _quote(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name.isascii() or name[0].isdigit():
        raise RegistrationError(f"{name!r} is not a plain identifier (letters, digits, _)")
    return f'"{name}"'


def _pg_type(annotation: Any) -> tuple[str, bool]:
    """(PostgreSQL type, nullable) of a field annotation."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        pg, _ = _pg_type(args[0] if len(args) == 1 else dict)
        return pg, True
    if origin is Literal:
        return _pg_type(type(get_args(annotation)[0]))
    if origin is typing.Annotated:
        return _pg_type(get_args(annotation)[0])
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return "text", False
        for python_type, pg in _SCALARS.items():
            if issubclass(annotation, python_type) and not (
                python_type is int and issubclass(annotation, bool)
            ):
                return pg, False
    return "jsonb", False


@dataclass(frozen=True)
class Column:
    """One column of a read model's table."""

    name: str
    pg_type: str
    nullable: bool
    default: Any


class ReadModel(BaseModel):
    """Base of read-model rows: set ``__table__`` and ``__key__`` (a column or a tuple);
    ``__schema__`` only to keep the table out of the read-model schema."""

    model_config = ConfigDict(extra="forbid")

    __table__: ClassVar[str] = ""
    __key__: ClassVar[str | tuple[str, ...]] = ""
    __schema__: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("__table__"):
            _check_table_name(cls)

    @classmethod
    def key_columns(cls) -> tuple[str, ...]:
        """The primary key's columns."""
        return (cls.__key__,) if isinstance(cls.__key__, str) else tuple(cls.__key__)

    @classmethod
    def columns(cls) -> tuple[Column, ...]:
        """Every column, in field order."""
        cached: tuple[Column, ...] | None = cls.__dict__.get("_columns_cache")
        if cached is None:
            cached = tuple(
                Column(name, *_pg_type(f.annotation), None if f.is_required() else f.default)
                for name, f in cls.model_fields.items()
            )
            cls._columns_cache = cached  # type: ignore[attr-defined]
        return cached

    @classmethod
    def check(cls) -> None:
        """Raise a clear error for a model that cannot map to a table."""
        if not cls.__table__:
            raise RegistrationError(f"read model {cls.__qualname__} has no __table__")
        _check_table_name(cls)
        names = {c.name for c in cls.columns()}
        for key in cls.key_columns():
            if key not in names:
                raise RegistrationError(f"read model {cls.__qualname__}: key {key!r} is no field")

    @classmethod
    async def get(cls, conn: Executor, key: Any) -> Self | None:
        """The row with this key from the live generation (the view), or ``None``."""
        keys = cls.key_columns()
        values = (key,) if len(keys) == 1 else tuple(key)
        rows = await cls.find(conn, limit=1, **dict(zip(keys, values, strict=True)))
        return rows[0] if rows else None

    @classmethod
    async def find(
        cls,
        conn: Executor,
        *,
        order_by: str | tuple[str, ...] = (),
        limit: int | None = None,
        offset: int = 0,
        **equals: Any,
    ) -> list[Self]:
        """Rows whose columns equal the given values, in ``order_by`` order (``-name`` for
        descending). For anything else, query the view ``__table__`` with SQL."""
        names = {c.name for c in cls.columns()}
        unknown = (set(equals) | {o.lstrip("-") for o in _tuple(order_by)}) - names
        if unknown:
            raise ValueError(f"{cls.__qualname__} has no column(s) {sorted(unknown)}")
        columns = ", ".join(_quote(c.name) for c in cls.columns())
        sql = f"SELECT {columns} FROM {view_name(cls)}"
        args: list[Any] = []
        conditions = []
        for name, value in equals.items():  # `=` keeps the primary key and indexes usable
            if value is None:
                conditions.append(f"{_quote(name)} IS NULL")
            else:
                args.append(value)
                conditions.append(f"{_quote(name)} = ${len(args)}")
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        if order_by:
            sql += " ORDER BY " + ", ".join(
                f"{_quote(o.lstrip('-'))}{' DESC' if o.startswith('-') else ''}"
                for o in _tuple(order_by)
            )
        sql += f" LIMIT {int(limit)}" if limit is not None else ""
        sql += f" OFFSET {int(offset)}" if offset else ""
        rows = await conn.fetch(sql, *args)
        return [cls.model_validate(dict(row)) for row in rows]

    def key(self) -> Any:
        """This row's key: the value, or a tuple for a composite key."""
        keys = self.key_columns()
        return getattr(self, keys[0]) if len(keys) == 1 else tuple(getattr(self, k) for k in keys)


def _tuple(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else value


def _check_table_name(model: type[ReadModel]) -> None:
    _quote(model.__table__)
    if is_reserved(model.__table__):
        raise RegistrationError(
            f"read model {model.__qualname__}: table name {model.__table__!r} is MessageDB's "
            "(its functions find their objects through the search path, where the read-model "
            "schema comes first): choose another __table__"
        )


def _qualified(model: type[ReadModel], name: str) -> str:
    """``name`` in the model's own schema, or unqualified: in the connection's read-model
    schema, first on its search path."""
    schema = model.__schema__
    return _quote(name) if schema is None else f"{_quote(schema)}.{_quote(name)}"


def physical(model: type[ReadModel], generation: int) -> str:
    """The quoted name of a model's table for ``generation``."""
    return _qualified(model, f"{model.__table__}__g{generation}")


def view_name(model: type[ReadModel]) -> str:
    """The quoted name of the view readers query."""
    return _qualified(model, model.__table__)


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, decimal.Decimal)):
        return repr(value) if not isinstance(value, decimal.Decimal) else str(value)
    if isinstance(value, str) and "'" not in value and "\\" not in value:
        return f"'{value}'"
    return ""


def create_table_sql(model: type[ReadModel], generation: int) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for one generation of a model."""
    model.check()
    lines = []
    for c in model.columns():
        default = _literal(c.default) if c.default is not None else ""
        lines.append(
            f"{_quote(c.name)} {c.pg_type}"
            + ("" if c.nullable else " NOT NULL")
            + (f" DEFAULT {default}" if default else "")
        )
    key = ", ".join(_quote(k) for k in model.key_columns())
    lines.append(f"{_quote(POSITION_COLUMN)} bigint NOT NULL DEFAULT 0")
    lines.append(f"PRIMARY KEY ({key})")
    return (
        f"CREATE TABLE IF NOT EXISTS {physical(model, generation)} (\n  "
        + ",\n  ".join(lines)
        + "\n)"
    )


def create_view_sql(model: type[ReadModel], generation: int) -> str:
    """Point the readers' view at ``generation`` (atomic with the transaction it runs in)."""
    return (
        f"CREATE OR REPLACE VIEW {view_name(model)} AS SELECT * FROM {physical(model, generation)}"
    )


@dataclass(frozen=True, slots=True)
class Increment:
    """Add ``by`` to a numeric column (``update``/``add``), instead of setting it."""

    by: int | float | decimal.Decimal = 1


POSITION_COLUMN = "_position"  # global position of the last message applied to the row


@dataclass(slots=True)
class _Row:
    """A key's pending state in a batch: a whole row, a patch, known absent, or deleted."""

    row: ReadModel | None = None  # whole row known (put, or loaded)
    original: dict[str, Any] | None = None  # the row as loaded, to skip unchanged writes
    sets: dict[str, Any] = field(default_factory=dict)
    increments: dict[str, Any] = field(default_factory=dict)
    upsert: bool = False  # the patch creates the row when missing (``add``)
    absent: bool = False  # known not to exist
    deleted: bool = False  # to be deleted (implies absent)
    position: int = 0  # newest message that changed this key in the batch
    stored: int | None = None  # the row's stored position, once loaded (exact mode)
    ops: list[tuple[int, str, Any]] | None = None  # unresolved changes (exact mode)

    @property
    def is_patch(self) -> bool:
        return self.row is None and not self.absent and not self.deleted


class Table:
    """One read model's pending changes within one batch (a unit of work with an identity map).

    Fast mode (the consumer is past every message it ever applied) merges changes per key and
    writes them without reading. Exact mode (after a reset, messages are applied again) first
    loads the touched rows and applies only the changes of messages newer than each row's
    stored position, so replaying a message never changes a row twice.
    """

    def __init__(
        self,
        model: type[ReadModel],
        generation: int,
        conn: Connection,
        position: Callable[[], int],
        *,
        exact: bool = False,
    ) -> None:
        self.model = model
        self.name = physical(model, generation)
        self.exact = exact
        self._conn = conn
        self._position = position
        self._rows: dict[Any, _Row] = {}
        self._columns = {c.name: c for c in model.columns()}
        self._names = [c.name for c in model.columns()]
        self._column_names = frozenset(self._names)
        self._enum_columns = frozenset(
            name
            for name, f in model.model_fields.items()
            if any(isinstance(t, type) and issubclass(t, enum.Enum) for t in _types(f.annotation))
        )

    # -- changes (no I/O) --------------------------------------------------------------------

    def put(self, row: ReadModel) -> None:
        """Insert or replace a whole row."""
        if not isinstance(row, self.model):
            raise TypeError(f"put expects a {self.model.__qualname__}, got {type(row).__name__}")
        self._change(row.key(), "put", row)

    def update(self, key: Any, **changes: Any) -> None:
        """Change some columns of an existing row (no effect when the row does not exist)."""
        self._check(changes)
        self._change(key, "update", changes)

    def add(self, key: Any, **changes: Any) -> None:
        """Like ``update``, but creates the row (other columns at their defaults) if missing."""
        self._check(changes)
        self._change(key, "add", changes)

    def delete(self, key: Any) -> None:
        """Delete a row."""
        self._change(key, "delete", None)

    def _check(self, changes: dict[str, Any]) -> None:
        if changes.keys() <= self._column_names:
            return
        unknown = set(changes) - self._column_names
        raise ValueError(f"{self.model.__qualname__} has no column(s) {sorted(unknown)}")

    def _change(self, key: Any, kind: str, payload: Any) -> None:
        position = self._position()
        state = self._rows.get(key)
        patching = kind == "update" or kind == "add"
        if state is None:
            if patching and not self.exact:  # first change of this key in the batch
                state = self._rows[key] = _Row(upsert=kind == "add", position=position)
                _merge(state, payload)
                return
            state = self._rows[key] = _Row()
        elif patching and not self.exact and state.ops is None:
            if state.row is not None:  # a row already in this batch: change it in memory
                _apply(state.row, payload)
                state.position = position
                return
            if state.is_patch and (kind == "update" or state.upsert):
                _merge(state, payload)
                state.position = position
                return
        if state.ops is not None:  # unresolved until the row is loaded
            state.ops.append((position, kind, payload))
            return
        if self.exact:
            if state.stored is None:
                state.ops = [(position, kind, payload)]
                return
            if position <= state.stored:
                return  # applied before the reset: already in the row
        elif (
            kind == "add"
            and state.is_patch
            and not state.upsert
            and (state.sets or state.increments)
        ):
            # An update of a row not known to exist, then an add: whether the update counts
            # depends on the row, so the key is resolved by loading it at flush.
            state.ops = [
                (state.position, "update", _patch_changes(state)),
                (position, kind, payload),
            ]
            state.sets, state.increments = {}, {}
            return
        self._rows[key] = _step(self, key, state, kind, payload, position)

    def _new(self, key: Any, changes: dict[str, Any]) -> ReadModel:
        values = {c.name: c.default for c in self.model.columns() if c.default is not None}
        keys = self.model.key_columns()
        values.update(zip(keys, (key,) if len(keys) == 1 else key, strict=True))
        row = self.model.model_validate(values)
        _apply(row, changes)
        return row

    # -- reading -----------------------------------------------------------------------------

    async def get(self, key: Any) -> ReadModel | None:
        """The row as of this batch's changes (loaded once per batch), or ``None``."""
        state = self._rows.get(key)
        if state is None or state.is_patch or (self.exact and state.stored is None):
            await self.load([key])
            state = self._rows[key]
        return state.row

    async def load(self, keys: list[Any]) -> None:
        """Load many rows into the batch's identity map in one round trip."""
        wanted = [
            k
            for k in keys
            if (s := self._rows.get(k)) is None or s.is_patch or (self.exact and s.stored is None)
        ]
        if not wanted:
            return
        found: dict[Any, tuple[ReadModel, int]] = {}
        for record in await self._conn.fetch(*self._select(wanted)):
            values = dict(record)
            stored = values.pop(POSITION_COLUMN)
            row = self.model.model_validate(values)
            found[row.key()] = (row, stored)
        for key in wanted:
            self._loaded(key, *found.get(key, (None, 0)))

    def _select(self, keys: list[Any]) -> tuple[Any, ...]:
        key_cols = list(self.model.key_columns())
        cols = ", ".join(_quote(k) for k in key_cols)
        wanted = ", ".join(_quote(n) for n in [*self._names, POSITION_COLUMN])
        sql = (
            f"SELECT {wanted} FROM {self.name} WHERE ({cols}) IN "
            f"(SELECT * FROM unnest({self._array_args(key_cols)}))"
        )
        return (sql, *self._key_columns(keys))

    def _key_columns(self, keys: list[Any]) -> list[list[Any]]:
        if len(self.model.key_columns()) == 1:
            return [keys]
        return [list(column) for column in zip(*keys, strict=True)]

    def _loaded(self, key: Any, row: ReadModel | None, stored: int) -> None:
        state = self._rows.get(key) or _Row()
        base = _Row(
            row=row,
            original=None if row is None else row.model_dump(),
            absent=row is None,
            stored=stored,
            position=stored,
        )
        if state.ops is not None:
            for position, kind, payload in state.ops:
                if not self.exact or position > stored:
                    base = _step(self, key, base, kind, payload, position)
            self._rows[key] = base
            return
        if state.is_patch:
            kind = "add" if state.upsert else "update"
            base = _step(self, key, base, kind, _patch_changes(state), state.position)
        self._rows[key] = base

    # -- flushing ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write every pending change: a few set-based statements, in the caller's transaction."""
        unresolved = [k for k, state in self._rows.items() if state.ops is not None]
        if unresolved:
            await self.load(unresolved)
        rows: list[tuple[ReadModel, int]] = []
        patches: dict[tuple[bool, tuple[str, ...], tuple[str, ...]], list[tuple[Any, _Row]]] = {}
        deletes: list[Any] = []
        for key, state in self._rows.items():
            if state.deleted:
                deletes.append(key)
            elif state.row is not None:
                if state.original is None or state.row.model_dump() != state.original:
                    rows.append((state.row, state.position))
            elif state.is_patch and (state.sets or state.increments or state.upsert):
                shape = (state.upsert, tuple(sorted(state.sets)), tuple(sorted(state.increments)))
                patches.setdefault(shape, []).append((key, state))
        self._rows.clear()
        if deletes:
            await self._delete(deletes)
        if rows:
            await self._upsert_rows(rows)
        for shape, items in patches.items():
            await self._patch_rows(shape, items)

    def _array_args(self, names: list[str]) -> str:
        def pg_type(name: str) -> str:
            return "bigint" if name == POSITION_COLUMN else self._columns[name].pg_type

        return ", ".join(f"${i + 1}::{pg_type(n)}[]" for i, n in enumerate(names))

    async def _delete(self, keys: list[Any]) -> None:
        key_cols = list(self.model.key_columns())
        cols = ", ".join(_quote(k) for k in key_cols)
        sql = (
            f"DELETE FROM {self.name} WHERE ({cols}) IN "
            f"(SELECT * FROM unnest({self._array_args(key_cols)}))"
        )
        await self._conn.execute(sql, *self._key_columns(keys))

    async def _upsert_rows(self, rows: list[tuple[ReadModel, int]]) -> None:
        names = [*self._names, POSITION_COLUMN]
        key_cols = self.model.key_columns()
        others = [n for n in names if n not in key_cols]
        update = ", ".join(f"{_quote(n)} = EXCLUDED.{_quote(n)}" for n in others)
        sql = (
            f"INSERT INTO {self.name} ({', '.join(_quote(n) for n in names)}) "
            f"SELECT * FROM unnest({self._array_args(names)}) "
            f"ON CONFLICT ({', '.join(_quote(k) for k in key_cols)}) DO UPDATE SET {update}"
        )
        dumped = [row.__dict__ for row, _ in rows]
        columns = [self._column(n, [d[n] for d in dumped]) for n in self._names]
        columns.append([position for _, position in rows])
        await self._conn.execute(sql, *columns)

    def _column(self, name: str, values: list[Any]) -> list[Any]:
        """A column's values as PostgreSQL takes them (JSON-ready, enums by value)."""
        if self._columns[name].pg_type == "jsonb":
            return [_jsonable(v) for v in values]
        if name in self._enum_columns:
            return [v.value if isinstance(v, enum.Enum) else v for v in values]
        return values

    async def _patch_rows(
        self, shape: tuple[bool, tuple[str, ...], tuple[str, ...]], items: list[tuple[Any, _Row]]
    ) -> None:
        upsert, sets, increments = shape
        key_cols = list(self.model.key_columns())
        names = [*key_cols, *sets, *increments, POSITION_COLUMN]
        columns = self._key_columns([key for key, _ in items])
        columns += [self._column(n, [s.sets[n] for _, s in items]) for n in sets]
        columns += [[s.increments[n] for _, s in items] for n in increments]
        columns.append([s.position for _, s in items])
        quoted = [_quote(n) for n in names]
        keys = ", ".join(_quote(k) for k in key_cols)
        position = _quote(POSITION_COLUMN)
        if upsert:
            assign = [f"{_quote(n)} = EXCLUDED.{_quote(n)}" for n in sets] + [
                f"{_quote(n)} = t.{_quote(n)} + EXCLUDED.{_quote(n)}" for n in increments
            ]
            assign.append(f"{position} = EXCLUDED.{position}")
            sql = (
                f"INSERT INTO {self.name} AS t ({', '.join(quoted)}) "
                f"SELECT * FROM unnest({self._array_args(names)}) "
                f"ON CONFLICT ({keys}) DO UPDATE SET {', '.join(assign)}"
            )
        else:
            assign = [f"{_quote(n)} = v.{_quote(n)}" for n in sets] + [
                f"{_quote(n)} = t.{_quote(n)} + v.{_quote(n)}" for n in increments
            ]
            assign.append(f"{position} = v.{position}")
            match = " AND ".join(f"t.{_quote(k)} = v.{_quote(k)}" for k in key_cols)
            sql = (
                f"UPDATE {self.name} AS t SET {', '.join(assign)} "
                f"FROM unnest({self._array_args(names)}) AS v({', '.join(quoted)}) WHERE {match}"
            )
        await self._conn.execute(sql, *columns)


def _step(table: Table, key: Any, state: _Row, kind: str, payload: Any, position: int) -> _Row:
    """The key's state after one change."""
    if kind == "put":
        return _Row(row=payload, position=position, stored=state.stored, original=state.original)
    if kind == "delete":
        return _Row(absent=True, deleted=True, position=position, stored=state.stored)
    upsert = kind == "add"
    if state.row is not None:
        _apply(state.row, payload)
        state.position = position
        return state
    if not state.is_patch:
        if not upsert:
            return state
        return _Row(row=table._new(key, payload), position=position, stored=state.stored)
    state.upsert = state.upsert or upsert
    state.position = position
    _merge(state, payload)
    return state


def _apply(row: ReadModel, changes: dict[str, Any]) -> None:
    # Straight into the model's __dict__: assignment is not validated (validate_assignment is
    # off) and this skips pydantic's __setattr__ bookkeeping on the hot path.
    values = row.__dict__
    for name, value in changes.items():
        values[name] = values[name] + value.by if type(value) is Increment else value


def _merge(state: _Row, changes: dict[str, Any]) -> None:
    """Fold changes into a patch: a set after an increment wins; an increment after a set adds."""
    sets, increments = state.sets, state.increments
    for name, value in changes.items():
        if type(value) is Increment:
            if name in sets:
                sets[name] = sets[name] + value.by
            else:
                increments[name] = increments.get(name, 0) + value.by
        else:
            if increments:
                increments.pop(name, None)
            sets[name] = value


def _patch_changes(state: _Row) -> dict[str, Any]:
    return {**state.sets, **{k: Increment(v) for k, v in state.increments.items()}}


def _types(annotation: Any) -> tuple[Any, ...]:
    args = get_args(annotation)
    return (annotation, *args) if args else (annotation,)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
