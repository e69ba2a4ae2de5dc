"""A projection's tables over time: generations behind views, and what a rebuild does to them.

A projector that declares read models owns one physical table per model and generation
(``{table}__g{n}``); readers query the view ``{table}`` on the live generation, recorded in
``worker.projections``. A blue/green rebuild fills generation n+1 while generation n keeps
serving, then the views move to the new tables in one transaction and the old ones are dropped.
Which consumers fill a generation, and their positions, are the engine's business
(``worker.engine.rebuild``): these functions run inside its transactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.errors import PrivilegeError
from worker.read import queries as q
from worker.read.model import create_table_sql, create_view_sql, physical, view_name
from worker.store.read_schema import ROLES_HELP

if TYPE_CHECKING:
    from worker.read.model import ReadModel
    from worker.store.types import Connection, Executor


@dataclass(frozen=True)
class Projection:
    """A projector's read models as this layer sees them: its name, models and code version."""

    name: str
    models: tuple[type[ReadModel], ...]
    version: str | None = None


@dataclass(frozen=True)
class RebuildDue:
    """Why a projection needs a rebuild; ``blocking`` when its live tables no longer fit the
    code (its consumers must not run on them until it is rebuilt)."""

    reason: str
    blocking: bool


async def state(conn: Executor, name: str) -> tuple[int, int | None, str | None] | None:
    """(live generation, generation being built, code version), or ``None`` if unknown."""
    row = await conn.fetchrow(q.STATE, name)
    return None if row is None else (row[0], row[1], row[2])


async def building(conn: Executor) -> dict[str, int]:
    """Projections with a rebuild under way -> the generation being built."""
    return {row[0]: row[1] for row in await conn.fetch(q.BUILDING)}


async def lock(conn: Connection, projection: Projection) -> tuple[int, int | None, str | None]:
    """Register the projection if new and lock its row (in the caller's transaction)."""
    await conn.execute(q.REGISTER, projection.name, projection.version)
    row = await conn.fetchrow(q.LOCK, projection.name)
    assert row is not None, f"projection {projection.name} is not registered"
    return row[0], row[1], row[2]


async def _columns(conn: Executor, model: type[ReadModel], generation: int) -> list[str]:
    rows = await conn.fetch(q.COLUMNS, physical(model, generation))
    return [row[0] for row in rows]


async def ensure_tables(conn: Connection, projection: Projection, generation: int) -> None:
    """Create the generation's tables if missing."""
    for model in projection.models:
        await conn.execute(create_table_sql(model, generation))


async def _point_views(conn: Connection, projection: Projection, generation: int) -> None:
    for model in projection.models:
        try:
            async with conn.transaction():
                await conn.execute(create_view_sql(model, generation))
        except Exception:  # the columns changed: a view cannot lose or reorder columns
            await conn.execute(q.drop_view(view_name(model)))
            await conn.execute(create_view_sql(model, generation))


def tables(projection: Projection, generation: int) -> list[str]:
    """The quoted names of a generation's tables."""
    return [physical(model, generation) for model in projection.models]


def views(projection: Projection) -> list[str]:
    """The quoted names of the views readers query."""
    return [view_name(model) for model in projection.models]


def _relations(projection: Projection, generation: int) -> list[str]:
    """The quoted names of a generation's tables and of the views, table then view per model."""
    return [name for m in projection.models for name in (physical(m, generation), view_name(m))]


async def prepare(
    conn: Connection, projection: Projection, *, may_create: bool = True
) -> RebuildDue | None:
    """Create the projection's live tables and views if missing (when ``may_create``; else
    ``PrivilegeError`` naming the first missing one), and check the role may write them.

    Returns why a rebuild is due when the code's version or columns differ from the live
    generation; ``None`` when all is in order.
    """
    if not projection.models:
        return None
    async with conn.transaction():
        generation, _, stored_version = await lock(conn, projection)
        missing = [
            r[0] for r in await conn.fetch(q.MISSING_RELATIONS, _relations(projection, generation))
        ]
        if missing and not may_create:
            user = await conn.fetchval(q.CURRENT_USER)
            raise PrivilegeError(
                f"{missing[0]} of projection {projection.name!r} does not exist, and role "
                f'"{user}" may not create tables in the read-model schema: run `worker db '
                f"install` with the owner role ({ROLES_HELP})"
            )
        if missing:
            await ensure_tables(conn, projection, generation)
            for model in projection.models:
                if await conn.fetchval(q.RELATION_EXISTS, view_name(model)) is None:
                    await conn.execute(create_view_sql(model, generation))
        await check_rights(conn, projection, generation)
    return await _due(conn, projection, generation, stored_version)


async def check_rights(conn: Connection, projection: Projection, generation: int) -> None:
    """``PrivilegeError`` naming the first right on the generation's tables the role lacks."""
    lacking = await conn.fetch(q.TABLE_RIGHTS_MISSING, tables(projection, generation))
    if lacking:
        table, right, user = lacking[0]
        raise PrivilegeError(
            f'role "{user}" lacks {right} on table {table} of projection {projection.name!r}: '
            f"grant it with `worker db grant {user}` as the owner role ({ROLES_HELP})"
        )


async def rebuild_rights_missing(
    conn: Connection, projection: Projection, *, in_place: bool
) -> tuple[str, list[str]]:
    """(the role, the rights a rebuild of the projection needs that it lacks): blue/green
    creates the next generation's tables, replaces the views and drops the old tables; in place
    empties the live tables."""
    found = await state(conn, projection.name)
    generation = found[0] if found else 1
    live = _relations(projection, generation)
    schemas = [model.__schema__ or "" for model in projection.models]
    if in_place:
        rows = await conn.fetch(q.REBUILD_RIGHTS_MISSING, [], [], live[::2])
    else:
        rows = await conn.fetch(q.REBUILD_RIGHTS_MISSING, schemas, live, [])
    user = rows[0][1] if rows else ""
    return user, [row[0] for row in rows]


async def due(conn: Executor, projection: Projection) -> RebuildDue | None:
    """Why the projection needs a rebuild, looked at without changing anything (``worker
    status``); ``None`` when it is in order, or was never set up in this database."""
    if not projection.models:
        return None
    found = await state(conn, projection.name)
    return None if found is None else await _due(conn, projection, found[0], found[2])


async def _due(
    conn: Executor, projection: Projection, generation: int, stored_version: str | None
) -> RebuildDue | None:
    name = projection.name
    for model in projection.models:
        want = [c.name for c in model.columns()]
        if (await _columns(conn, model, generation))[: len(want)] != want:
            return RebuildDue(
                f"read model {model.__qualname__} changed since generation {generation} of "
                f"{name!r} was built: run `worker rebuild {name}`",
                blocking=True,
            )
    if projection.version is not None and stored_version not in (None, projection.version):
        return RebuildDue(
            f"projection {name!r} is at version {projection.version} in code but "
            f"{stored_version} in the database: run `worker rebuild {name}`",
            blocking=False,
        )
    return None


async def begin_build(conn: Connection, projection: Projection) -> tuple[int, bool]:
    """(generation to build, whether it is a fresh start): the one an interrupted rebuild left,
    or the next one, with its tables (in the caller's transaction)."""
    generation, building, _ = await lock(conn, projection)
    target = building or generation + 1
    if building is None:
        await conn.execute(q.START_BUILD, projection.name, target)
    await ensure_tables(conn, projection, target)
    return target, building is None


async def go_live(conn: Connection, projection: Projection, target: int) -> None:
    """Point the views at ``target`` and record it as live (in the caller's transaction)."""
    await _point_views(conn, projection, target)
    await conn.execute(q.SWITCH, projection.name, target, projection.version)


async def drop(conn: Connection, projection: Projection, generation: int) -> None:
    """Drop a generation's tables (after the switch away from it)."""
    for model in projection.models:
        await conn.execute(q.drop_table(physical(model, generation)))


async def empty(conn: Connection, projection: Projection, generation: int) -> None:
    """Empty the live tables for an in-place rebuild (in the caller's transaction)."""
    for model in projection.models:
        await conn.execute(q.truncate(physical(model, generation)))
    await conn.execute(q.SET_CODE_VERSION, projection.name, projection.version)
