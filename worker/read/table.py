"""The ``Table`` unit of work: one read model's changes within one batch, written set-based.

A projector's handlers change rows through ``ctx.table(Model)``: ``put`` (whole row), ``update``
(some columns of a row that must exist, ``Increment`` for counters), ``update_if_present``,
``add`` (counters, creating the row if needed), ``delete`` and ``await get``. Changes are merged
per key in memory (``worker.read.merge``) and reach PostgreSQL at the end of the batch in a few
set-based statements (many rows each).
"""

from __future__ import annotations

import enum
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import orjson
from pydantic import BaseModel

from worker.errors import MissingRowError
from worker.read.handed import handed
from worker.read.merge import (
    IF_PRESENT,
    UPDATE,
    MissingRow,
    Pending,
    apply,
    merge,
    patch_changes,
    step,
)
from worker.read.model import POSITION_COLUMN, ReadModel, field_types, physical, quote

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from worker.store.types import Connection


_PATCHING = frozenset((UPDATE, IF_PRESENT, "add"))

# A patch's statement: (creates a missing row, needs the row, set columns, incremented columns).
Shape: TypeAlias = tuple[bool, bool, tuple[str, ...], tuple[str, ...]]


class TableFactory(Protocol):
    """Makes a batch's unit of work on one read model: ``Table`` itself, or an in-memory
    stand-in with the same constructor (``worker.testing``)."""

    def __call__(
        self,
        model: type[ReadModel],
        generation: int,
        conn: Connection,
        position: Callable[[], int],
        *,
        exact: bool = False,
    ) -> Table: ...


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
        self._rows: dict[Any, Pending] = {}
        self._columns = {c.name: c for c in model.columns()}
        self._names = [c.name for c in model.columns()]
        self._column_names = frozenset(self._names)
        self._enum_columns = frozenset(
            name
            for name, f in model.model_fields.items()
            if any(
                isinstance(t, type) and issubclass(t, enum.Enum) for t in field_types(f.annotation)
            )
        )

    # -- changes (no I/O) --------------------------------------------------------------------

    def put(self, row: ReadModel) -> None:
        """Insert or replace a whole row."""
        if not isinstance(row, self.model):
            raise TypeError(f"put expects a {self.model.__qualname__}, got {type(row).__name__}")
        key = row.key()
        if key not in self._rows and not self.exact:  # (as ``step`` would make it)
            self._rows[key] = Pending(row=row, position=self._position())
            return
        self._change(key, "put", row)

    def update(self, key: Any, **changes: Any) -> None:
        """Change some columns of an existing row. A missing row is an error
        (``MissingRowError``): at once when the batch knows the row is missing (deleted, or
        read), else at the flush; in a batch replayed after a reset it is skipped."""
        if not changes.keys() <= self._column_names:  # (inline: a projector's hot path)
            self._check(changes)
        state = self._rows.get(key)
        if state is None or state.ops is not None or self.exact or state.absent:
            self._change(key, UPDATE, changes)
            return
        # The hot path, as ``_change`` would take it: a key the batch already changes, a whole
        # row (changed in memory) or a patch (which this one extends).
        if state.row is not None:
            apply(state.row, changes)
        else:
            merge(state, changes)
            state.strict = True
        position = self._position()
        if position > state.position:  # (concurrent partitions: out of order)
            state.position = position

    def update_if_present(self, key: Any, **changes: Any) -> None:
        """Like ``update``, but a missing row is skipped: no row is created, nothing fails."""
        self._check(changes)
        self._change(key, IF_PRESENT, changes)

    def add(self, key: Any, **changes: Any) -> None:
        """Like ``update``, but creates the row (other columns at their defaults) if missing."""
        if not changes.keys() <= self._column_names:
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
        if kind == UPDATE and self.exact:
            kind = IF_PRESENT  # a replay: its messages went well the first time
        patching = kind in _PATCHING
        if state is None:
            if patching and not self.exact:  # first change of this key in the batch
                state = self._rows[key] = Pending(
                    upsert=kind == "add", strict=kind == UPDATE, position=position
                )
                merge(state, payload)
                return
            state = self._rows[key] = Pending()
        elif patching and not self.exact and state.ops is None:
            if state.row is not None:  # a row already in this batch: change it in memory
                apply(state.row, payload)
                if position > state.position:  # (concurrent partitions: out of order)
                    state.position = position
                return
            if not state.absent and not state.deleted and (kind != "add" or state.upsert):
                merge(state, payload)  # a patch (no row known) that this change extends
                state.strict = state.strict or kind == UPDATE
                if position > state.position:
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
                (state.position, UPDATE if state.strict else IF_PRESENT, patch_changes(state)),
                (position, kind, payload),
            ]
            state.sets, state.increments = {}, {}
            return
        self._rows[key] = self._step(key, state, kind, payload, position)

    def _step(self, key: Any, state: Pending, kind: str, payload: Any, position: int) -> Pending:
        """``step``, with a missing row named."""
        try:
            return step(state, kind, payload, position, partial(self._new, key))
        except MissingRow:
            raise self.missing_row(key) from None

    def missing_row(self, key: Any, more: int = 0) -> MissingRowError:
        """The error of an ``update`` of a row that does not exist (and ``more`` others)."""
        others = f" (and {more} more)" if more else ""
        return MissingRowError(
            f"{self.model.__qualname__}: no row with key {key!r} to update{others}; "
            "update_if_present skips a missing row, add creates it"
        )

    def _new(self, key: Any, changes: dict[str, Any]) -> ReadModel:
        values = self.model.new_row_defaults()
        keys = self.model.key_columns()
        values.update(zip(keys, (key,) if len(keys) == 1 else key, strict=True))
        row = self.model.model_validate(values)
        apply(row, changes)
        return row

    # -- reading -----------------------------------------------------------------------------

    def get(self, key: Any) -> Coroutine[Any, Any, ReadModel | None]:
        """The row as of this batch's changes (loaded once per batch), or ``None``; a handler
        must await it (``worker.read.handed``)."""
        return handed(f"ctx.table({self.model.__name__}).get", self._get, key)

    def load(self, keys: list[Any]) -> Coroutine[Any, Any, None]:
        """Load many rows into the batch's identity map in one round trip (awaited: ``get``)."""
        return handed(f"ctx.table({self.model.__name__}).load", self._load, keys)

    async def _get(self, key: Any) -> ReadModel | None:
        if self._unresolved(key):
            await self._load([key])
        return self._rows[key].row

    async def _load(self, keys: list[Any]) -> None:
        wanted = [k for k in keys if self._unresolved(k)]
        if not wanted:
            return
        found = await self._fetch(wanted)
        for key in wanted:
            # Handlers of a concurrent batch share the table: another one may have loaded the
            # key (and changed the row) while this fetch ran; its row is the newer.
            if self._unresolved(key):
                self._loaded(key, *found.get(key, (None, 0)))

    def _unresolved(self, key: Any) -> bool:
        """Whether the key's row must be read before it is known."""
        s = self._rows.get(key)
        return s is None or s.is_patch or (self.exact and s.stored is None)

    async def _fetch(self, keys: list[Any]) -> dict[Any, tuple[ReadModel, int]]:
        """The stored rows of ``keys`` that exist, with their stored positions."""
        found: dict[Any, tuple[ReadModel, int]] = {}
        for record in await self._conn.fetch(*self._select(keys)):
            values = dict(record)
            stored = values.pop(POSITION_COLUMN)
            row = self.model.model_validate(values)
            found[row.key()] = (row, stored)
        return found

    def _select(self, keys: list[Any]) -> tuple[Any, ...]:
        key_cols = list(self.model.key_columns())
        cols = ", ".join(quote(k) for k in key_cols)
        wanted = ", ".join(quote(n) for n in [*self._names, POSITION_COLUMN])
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
        state = self._rows.get(key) or Pending()
        base = Pending(
            row=row,
            original=None if row is None else row.model_dump(),
            absent=row is None,
            stored=stored,
            position=stored,
        )
        if state.ops is not None:
            for position, kind, payload in state.ops:
                if not self.exact or position > stored:
                    base = self._step(key, base, kind, payload, position)
            self._rows[key] = base
            return
        if state.is_patch:
            kind = "add" if state.upsert else UPDATE if state.strict else IF_PRESENT
            base = self._step(key, base, kind, patch_changes(state), state.position)
        self._rows[key] = base

    # -- flushing ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write every pending change: a few set-based statements, in the caller's transaction."""
        unresolved = [k for k, state in self._rows.items() if state.ops is not None]
        if unresolved:
            await self._load(unresolved)
        rows: list[tuple[ReadModel, int]] = []
        patches: dict[Shape, list[tuple[Any, Pending]]] = {}
        deletes: list[Any] = []
        for key, state in self._rows.items():
            if state.deleted:
                deletes.append(key)
            elif state.row is not None:
                if state.original is None or state.row.model_dump() != state.original:
                    rows.append((state.row, state.position))
            elif state.is_patch and (state.sets or state.increments or state.upsert):
                shape = (
                    state.upsert,
                    state.strict and not state.upsert,
                    tuple(sorted(state.sets)),
                    tuple(sorted(state.increments)),
                )
                patches.setdefault(shape, []).append((key, state))
        self._rows.clear()
        if deletes:
            await self._delete(deletes)
        if rows:
            await self._upsert_rows(rows)
        for shape, items in patches.items():
            await self._patch_rows(shape, items)

    def _array_args(self, names: list[str]) -> str:
        def array(index: int, name: str) -> str:
            if name == POSITION_COLUMN:
                return f"${index}::bigint[]"
            pg_type = self._columns[name].pg_type
            # JSON goes as text (see _column): a list value would be read as an array dimension.
            return f"${index}::text[]::jsonb[]" if pg_type == "jsonb" else f"${index}::{pg_type}[]"

        return ", ".join(array(i + 1, n) for i, n in enumerate(names))

    async def _delete(self, keys: list[Any]) -> None:
        key_cols = list(self.model.key_columns())
        cols = ", ".join(quote(k) for k in key_cols)
        sql = (
            f"DELETE FROM {self.name} WHERE ({cols}) IN "
            f"(SELECT * FROM unnest({self._array_args(key_cols)}))"
        )
        await self._conn.execute(sql, *self._key_columns(keys))

    async def _upsert_rows(self, rows: list[tuple[ReadModel, int]]) -> None:
        names = [*self._names, POSITION_COLUMN]
        key_cols = self.model.key_columns()
        others = [n for n in names if n not in key_cols]
        update = ", ".join(f"{quote(n)} = EXCLUDED.{quote(n)}" for n in others)
        sql = (
            f"INSERT INTO {self.name} ({', '.join(quote(n) for n in names)}) "
            f"SELECT * FROM unnest({self._array_args(names)}) "
            f"ON CONFLICT ({', '.join(quote(k) for k in key_cols)}) DO UPDATE SET {update}"
        )
        dumped = [row.__dict__ for row, _ in rows]
        columns = [self._column(n, [d[n] for d in dumped]) for n in self._names]
        columns.append([position for _, position in rows])
        await self._conn.execute(sql, *columns)

    def _column(self, name: str, values: list[Any]) -> list[Any]:
        """A column's values as PostgreSQL takes them (JSON as text, enums by value)."""
        if self._columns[name].pg_type == "jsonb":
            return [
                None if v is None else orjson.dumps(v, default=_json_default).decode()
                for v in values
            ]
        if name in self._enum_columns:
            return [v.value if isinstance(v, enum.Enum) else v for v in values]
        return values

    async def _patch_rows(self, shape: Shape, items: list[tuple[Any, Pending]]) -> None:
        upsert, strict, sets, increments = shape
        key_cols = list(self.model.key_columns())
        # A row the upsert creates takes the model's defaults for the columns it is not given
        # (not the table's: its DDL holds plain literals only, no list nor factory).
        defaults = self.model.new_row_defaults() if upsert else {}
        named = {*key_cols, *sets, *increments}
        rest = [n for n in defaults if n not in named]
        names = [*key_cols, *sets, *increments, *rest, POSITION_COLUMN]
        columns = self._key_columns([key for key, _ in items])
        columns += [self._column(n, [s.sets[n] for _, s in items]) for n in sets]
        columns += [[s.increments[n] for _, s in items] for n in increments]
        columns += [self._column(n, [defaults[n]] * len(items)) for n in rest]
        columns.append([s.position for _, s in items])
        quoted = [quote(n) for n in names]
        keys = ", ".join(quote(k) for k in key_cols)
        position = quote(POSITION_COLUMN)
        if upsert:
            assign = [f"{quote(n)} = EXCLUDED.{quote(n)}" for n in sets] + [
                f"{quote(n)} = t.{quote(n)} + EXCLUDED.{quote(n)}" for n in increments
            ]
            assign.append(f"{position} = EXCLUDED.{position}")
            sql = (
                f"INSERT INTO {self.name} AS t ({', '.join(quoted)}) "
                f"SELECT * FROM unnest({self._array_args(names)}) "
                f"ON CONFLICT ({keys}) DO UPDATE SET {', '.join(assign)}"
            )
        else:
            assign = [f"{quote(n)} = v.{quote(n)}" for n in sets] + [
                f"{quote(n)} = t.{quote(n)} + v.{quote(n)}" for n in increments
            ]
            assign.append(f"{position} = v.{position}")
            match = " AND ".join(f"t.{quote(k)} = v.{quote(k)}" for k in key_cols)
            sql = (
                f"UPDATE {self.name} AS t SET {', '.join(assign)} "
                f"FROM unnest({self._array_args(names)}) AS v({', '.join(quoted)}) WHERE {match}"
            )
        status = await self._conn.execute(sql, *columns)
        if strict and int(status.rsplit(" ", 1)[-1]) < len(items):
            await self._refuse_missing([key for key, _ in items])

    async def _refuse_missing(self, keys: list[Any]) -> None:
        """Raise ``MissingRowError`` for the ``keys`` whose rows do not exist (an update found
        fewer rows than keys: one more round trip, on the way to failing)."""
        found = await self._fetch(keys)
        missing = [key for key in keys if key not in found]
        raise self.missing_row(missing[0], len(missing) - 1)


def _json_default(value: Any) -> Any:
    """What orjson cannot write itself, at any depth of a JSON column: models as JSON,
    ``Decimal`` as its exact text."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot go into a JSON column")
