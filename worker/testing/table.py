"""Read-model tables in memory: ``MemoryTable`` and the ``MemoryReadModels`` that hold them.

``MemoryTable`` is ``worker.read.table.Table`` itself (its merge rules, identity map and exact
mode, unchanged) over rows kept in memory instead of a PostgreSQL table: only reading stored
rows and writing the flushed changes differ, and they do what the set-based statements do
(``INSERT ... ON CONFLICT``, ``UPDATE ... FROM``, ``DELETE``), down to a column's default on an
``add`` that creates a row and the not-null error of a column left without a value. Values go
in and come out as PostgreSQL would give them back (JSON columns through JSON). The contract
suite ``tests/contracts/test_table.py`` holds both to the same results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

import asyncpg
import orjson

from worker.read.model import ReadModel
from worker.read.table import Table
from worker.testing.connection import failed, joined, undo_on

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.read.merge import Pending
    from worker.read.table import Shape
    from worker.store.types import Connection

M = TypeVar("M", bound=ReadModel)
_MISSING: Any = object()


class MemoryRows:
    """The stored rows of one read model's table (one generation): key -> (column values,
    position of the last message that changed the row)."""

    def __init__(self, model: type[ReadModel]) -> None:
        self.model = model
        self.data: dict[Any, tuple[dict[str, Any], int]] = {}

    def store(self, conn: object, key: Any, entry: tuple[dict[str, Any], int] | None) -> None:
        """Set (or, with ``None``, delete) a row; undone when ``conn``'s transaction rolls back."""
        data = self.data
        before = data.get(key, _MISSING)
        if entry is None:
            if before is _MISSING:
                return
            del data[key]
        else:
            data[key] = entry

        def undo() -> None:
            if before is _MISSING:
                data.pop(key, None)
            else:
                data[key] = before

        undo_on(conn, undo)

    def sorted_keys(self) -> list[Any]:
        """The keys, sorted (in insertion order when they do not compare)."""
        try:
            return sorted(self.data)
        except TypeError:
            return list(self.data)

    def rows(self) -> list[ReadModel]:
        """Every row, as the model, sorted by key."""
        return [self.model.model_validate(self.data[key][0]) for key in self.sorted_keys()]

    def positions(self) -> dict[Any, int]:
        """Each row's stored position (the global position of its last change)."""
        return {key: self.data[key][1] for key in self.sorted_keys()}


class MemoryTable(Table):
    """``Table`` over rows in memory (see the module doc).

    Made by ``MemoryReadModels`` for the engine's batches (in their in-memory transaction), or
    on its own: ``MemoryTable(Model)`` keeps rows of its own, and its ``flush`` commits at once.
    ``rows()`` reads what was flushed.
    """

    def __init__(
        self,
        model: type[ReadModel],
        generation: int = 1,
        conn: Connection | None = None,
        position: Callable[[], int] | None = None,
        *,
        exact: bool = False,
        rows: MemoryRows | None = None,
    ) -> None:
        # The in-memory transaction stands where Table keeps its connection; None commits at once.
        super().__init__(
            model, generation, cast("Connection", conn), position or (lambda: 0), exact=exact
        )
        self.stored = rows if rows is not None else MemoryRows(model)

    def rows(self) -> list[ReadModel]:
        """The stored rows (as flushed), sorted by key."""
        return self.stored.rows()

    # -- Table's I/O, in memory --------------------------------------------------------------

    async def _fetch(self, keys: list[Any]) -> dict[Any, tuple[ReadModel, int]]:
        joined(self._conn)
        found: dict[Any, tuple[ReadModel, int]] = {}
        for key in keys:
            entry = self.stored.data.get(key)
            if entry is not None:
                row = self.model.model_validate(entry[0])
                found[row.key()] = (row, entry[1])
        return found

    async def _delete(self, keys: list[Any]) -> None:
        joined(self._conn)
        for key in keys:
            self.stored.store(self._conn, key, None)

    async def _upsert_rows(self, rows: list[tuple[ReadModel, int]]) -> None:
        joined(self._conn)
        for row, position in rows:
            values = {n: self._value(n, row.__dict__[n]) for n in self._names}
            self._insert(row.key(), values, position)

    async def _patch_rows(self, shape: Shape, items: list[tuple[Any, Pending]]) -> None:
        joined(self._conn)
        upsert, strict, sets, increments = shape
        missing = [key for key, _ in items if strict and key not in self.stored.data]
        for key, state in items:
            changes = {n: self._value(n, state.sets[n]) for n in sets}
            if upsert:
                # INSERT ... ON CONFLICT checks the row it proposes before it finds the
                # conflict: a column without a value fails even when the row exists.
                new = self._defaults()
                new.update(self._key_values(key))
                new.update(changes)
                new.update({n: state.increments[n] for n in increments})
                self._check_nulls(new)
            entry = self.stored.data.get(key)
            if entry is not None:
                values = {**entry[0], **changes}
                for n in increments:  # NULL + n stays NULL, as in SQL
                    old = values[n]
                    values[n] = None if old is None else old + state.increments[n]
                self._insert(key, values, state.position)
            elif upsert:
                self._insert(key, new, state.position)
        if missing:  # (as Table finds them: after the statement)
            raise self.missing_row(missing[0], len(missing) - 1)

    # -- values as PostgreSQL keeps them -----------------------------------------------------

    def _value(self, name: str, value: Any) -> Any:
        """A column's value as it comes back from PostgreSQL (JSON columns through JSON)."""
        (converted,) = self._column(name, [value])
        if self._columns[name].pg_type == "jsonb" and converted is not None:
            return orjson.loads(converted)  # JSON text, as Table sends it
        return converted

    def _defaults(self) -> dict[str, Any]:
        """A new row's columns: the model's defaults (as ``Table`` sends them), else NULL."""
        defaults = self.model.new_row_defaults()
        return {
            c.name: self._value(c.name, defaults[c.name]) if c.name in defaults else None
            for c in self.model.columns()
        }

    def _key_values(self, key: Any) -> dict[str, Any]:
        names = self.model.key_columns()
        return dict(zip(names, (key,) if len(names) == 1 else key, strict=True))

    def _insert(self, key: Any, values: dict[str, Any], position: int) -> None:
        self._check_nulls(values)
        self.stored.store(self._conn, key, (values, position))

    def _check_nulls(self, values: dict[str, Any]) -> None:
        for column in self.model.columns():
            if values[column.name] is None and not column.nullable:
                raise failed(
                    self._conn,
                    asyncpg.NotNullViolationError(
                        f'null value in column "{column.name}" of relation {self.name} '
                        "violates not-null constraint"
                    ),
                )


class MemoryReadModels:
    """Every read model's rows in memory, per table generation; the table factory
    (``worker.read.table.TableFactory``) the engine's batches and ``Context`` use."""

    def __init__(self) -> None:
        self._tables: dict[tuple[type[ReadModel], int], MemoryRows] = {}

    def __call__(
        self,
        model: type[ReadModel],
        generation: int,
        conn: Connection,
        position: Callable[[], int],
        *,
        exact: bool = False,
    ) -> Table:
        return MemoryTable(
            model, generation, conn, position, exact=exact, rows=self.stored(model, generation)
        )

    def stored(self, model: type[ReadModel], generation: int = 1) -> MemoryRows:
        """The stored rows of ``model``'s table (of ``generation``)."""
        rows = self._tables.get((model, generation))
        if rows is None:
            rows = self._tables[(model, generation)] = MemoryRows(model)
        return rows

    def table(self, model: type[ReadModel], generation: int = 1) -> MemoryTable:
        """A unit of work on ``model``'s rows outside any transaction (its ``flush`` commits
        at once): to give a test rows to start from."""
        return MemoryTable(model, generation, rows=self.stored(model, generation))

    def rows(self, model: type[M], generation: int = 1) -> list[M]:
        """Every row of ``model``, sorted by key."""
        return cast("list[M]", self.stored(model, generation).rows())

    def by_key(self, model: type[M], generation: int = 1) -> dict[Any, M]:
        """Every row of ``model`` by its key."""
        return {row.key(): row for row in self.rows(model, generation)}

    def row(self, model: type[M], key: Any, generation: int = 1) -> M | None:
        """The row of ``model`` with ``key``, or ``None``."""
        entry = self.stored(model, generation).data.get(key)
        return None if entry is None else model.model_validate(entry[0])
