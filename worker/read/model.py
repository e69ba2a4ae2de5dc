"""Read models: a pydantic model per row, and the tables and views the worker makes for them.

A projector's handlers change rows through ``ctx.table(Model)`` (``worker.read.table``); the
changes are merged per key in memory (``worker.read.merge``) and reach PostgreSQL at the end of
the batch in a few set-based statements, inside the batch's transaction.

Every read model lives in a physical table ``{table}__g{generation}``; a view named ``{table}``
points at the live generation, so a rebuild can fill the next generation while readers keep
reading the old one, then switch by replacing the view (see ``worker.read.generations``).

Both live in the read-model schema, the first on every worker connection's search path (see
``worker.store.read_schema``), unless the model names a schema of its own in ``__schema__``. A table
named like one of MessageDB's objects is refused: MessageDB's functions would use it.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import enum
import types
import typing
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict

from worker.errors import RegistrationError
from worker.store.read_schema import is_reserved

if TYPE_CHECKING:
    from typing import Self

    from worker.store.types import Executor

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


def quote(name: str) -> str:
    """``name`` double-quoted, after checking it is a plain identifier."""
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
    def new_row_defaults(cls) -> dict[str, Any]:
        """The values a new row takes for the columns it is not given: each field's default,
        or its ``default_factory`` called (the table's DDL can hold only plain literals)."""
        defaults: dict[str, Any] = {}
        for name, f in cls.model_fields.items():
            if f.is_required():
                continue
            value = f.get_default(call_default_factory=True)
            defaults[name] = copy.deepcopy(value) if isinstance(value, (list, dict, set)) else value
        return defaults

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
        columns = ", ".join(quote(c.name) for c in cls.columns())
        sql = f"SELECT {columns} FROM {view_name(cls)}"
        args: list[Any] = []
        conditions = []
        for name, value in equals.items():  # `=` keeps the primary key and indexes usable
            if value is None:
                conditions.append(f"{quote(name)} IS NULL")
            else:
                args.append(value)
                conditions.append(f"{quote(name)} = ${len(args)}")
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        if order_by:
            sql += " ORDER BY " + ", ".join(
                f"{quote(o.lstrip('-'))}{' DESC' if o.startswith('-') else ''}"
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
    quote(model.__table__)
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
    return quote(name) if schema is None else f"{quote(schema)}.{quote(name)}"


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
            f"{quote(c.name)} {c.pg_type}"
            + ("" if c.nullable else " NOT NULL")
            + (f" DEFAULT {default}" if default else "")
        )
    key = ", ".join(quote(k) for k in model.key_columns())
    lines.append(f"{quote(POSITION_COLUMN)} bigint NOT NULL DEFAULT 0")
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


class Increment:
    """Add ``by`` to a numeric column (``update``/``add``), instead of setting it."""

    # A plain class rather than a frozen dataclass: one is made per ``update`` on a projector's
    # hot path, and the dataclass's guarded ``__init__`` costs about four times as much.
    __slots__ = ("_by",)

    def __init__(self, by: int | float | decimal.Decimal = 1) -> None:
        self._by = by

    @property
    def by(self) -> int | float | decimal.Decimal:
        """The amount added (read-only)."""
        return self._by

    def __eq__(self, other: object) -> bool:
        if type(other) is not Increment:
            return NotImplemented
        return self._by == other._by

    def __hash__(self) -> int:
        return hash((Increment, self._by))

    def __repr__(self) -> str:
        return f"Increment(by={self._by!r})"


POSITION_COLUMN = "_position"  # global position of the last message applied to the row


def field_types(annotation: Any) -> tuple[Any, ...]:
    args = get_args(annotation)
    return (annotation, *args) if args else (annotation,)
