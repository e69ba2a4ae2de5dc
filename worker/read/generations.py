"""Projections' tables over time: creating them, rebuilding (blue/green or in place), resetting.

A projector that declares read models owns one physical table per model and generation
(``{table}__g{n}``) and readers query the view ``{table}`` on the live generation. A blue/green
rebuild fills generation n+1 from position 0 with consumers named ``{consumer}#g{n+1}`` while
the live generation keeps serving, then switches in one transaction: the views move to the new
tables, the live consumers' positions become the rebuild's and their leases are fenced (a
running worker reloads and carries on with the new generation); the old tables are dropped
after. An interrupted rebuild resumes from the rebuild consumers' positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from worker.engine import queries as q
from worker.read.model import create_table_sql, create_view_sql, physical, view_name

if TYPE_CHECKING:
    from worker.engine.subscriber import Subscriber
    from worker.read.model import ReadModel
    from worker.store.types import Connection

log = structlog.get_logger("worker.projection")

_STATE = "SELECT generation, building, code_version FROM worker.projections WHERE name = $1"
_REGISTER = """
INSERT INTO worker.projections (name, generation, code_version) VALUES ($1, 1, $2)
ON CONFLICT (name) DO NOTHING
"""
_LOCK = """
SELECT generation, building, code_version FROM worker.projections WHERE name = $1 FOR UPDATE
"""
_START_BUILD = "UPDATE worker.projections SET building = $2, updated_at = now() WHERE name = $1"
_SWITCH = """
UPDATE worker.projections
SET generation = $2, building = NULL, code_version = $3, switched_at = now(), updated_at = now()
WHERE name = $1
"""
_COPY_POSITION = """
INSERT INTO worker.positions AS p (consumer, position, high_water)
SELECT $1, position, position FROM worker.positions WHERE consumer = $2
ON CONFLICT (consumer) DO UPDATE
SET position = EXCLUDED.position, high_water = EXCLUDED.position, updated_at = now()
"""
_ZERO_POSITION = """
INSERT INTO worker.positions AS p (consumer, position, high_water) VALUES ($1, 0, 0)
ON CONFLICT (consumer) DO UPDATE SET position = 0, high_water = 0, updated_at = now()
"""
_FORGET = """
DELETE FROM worker.positions WHERE consumer = $1;
"""
_FORGET_LEASE = "DELETE FROM worker.leases WHERE consumer = $1"
_DROP_DEAD_LETTERS = "DELETE FROM worker.dead_letters WHERE consumer = $1"
_MOVE_DEAD_LETTERS = "UPDATE worker.dead_letters SET consumer = $1 WHERE consumer = $2"
_COLUMNS = """
SELECT attname FROM pg_attribute
WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
ORDER BY attnum
"""


def live_consumers(subscriber: Subscriber) -> list[str]:
    """Names of the projector's live consumers: one per category (or group member)."""
    return [slot.name for slot in subscriber.slots()]


def build_consumers(subscriber: Subscriber, generation: int) -> list[str]:
    """Names of the consumers that build ``generation``."""
    return [f"{name}#g{generation}" for name in live_consumers(subscriber)]


async def state(conn: Connection, name: str) -> tuple[int, int | None, str | None] | None:
    """(live generation, generation being built, code version), or ``None`` if unknown."""
    row = await conn.fetchrow(_STATE, name)
    return None if row is None else (row[0], row[1], row[2])


async def _columns(conn: Connection, model: type[ReadModel], generation: int) -> list[str]:
    rows = await conn.fetch(_COLUMNS, physical(model, generation))
    return [row[0] for row in rows]


async def _ensure_tables(conn: Connection, subscriber: Subscriber, generation: int) -> None:
    for model in subscriber.read_models:
        await conn.execute(create_table_sql(model, generation))


async def _point_views(conn: Connection, subscriber: Subscriber, generation: int) -> None:
    for model in subscriber.read_models:
        try:
            async with conn.transaction():
                await conn.execute(create_view_sql(model, generation))
        except Exception:  # the columns changed: a view cannot lose or reorder columns
            await conn.execute(f"DROP VIEW IF EXISTS {view_name(model)}")
            await conn.execute(create_view_sql(model, generation))


@dataclass(frozen=True)
class RebuildDue:
    """Why a projection needs a rebuild; ``blocking`` when its live tables no longer fit the
    code (its consumers must not run on them until it is rebuilt)."""

    reason: str
    blocking: bool


async def prepare(conn: Connection, subscriber: Subscriber) -> RebuildDue | None:
    """Create the projection's live tables and views if missing.

    Returns why a rebuild is due when the code's version or columns differ from the live
    generation; ``None`` when all is in order.
    """
    if not subscriber.read_models:
        return None
    async with conn.transaction():
        await conn.execute(_REGISTER, subscriber.name, subscriber.version)
        generation, _, stored_version = await _locked(conn, subscriber.name)
        await _ensure_tables(conn, subscriber, generation)
        for model in subscriber.read_models:
            if await conn.fetchval("SELECT to_regclass($1)", view_name(model)) is None:
                await conn.execute(create_view_sql(model, generation))
    for model in subscriber.read_models:
        have = await _columns(conn, model, generation)
        want = [c.name for c in model.columns()]
        if have[: len(want)] != want:
            return RebuildDue(
                f"read model {model.__qualname__} changed since generation {generation} of "
                f"{subscriber.name!r} was built: run `worker rebuild {subscriber.name}`",
                blocking=True,
            )
    if subscriber.version is not None and stored_version not in (None, subscriber.version):
        return RebuildDue(
            f"projection {subscriber.name!r} is at version {subscriber.version} in code but "
            f"{stored_version} in the database: run `worker rebuild {subscriber.name}`",
            blocking=False,
        )
    return None


async def _locked(conn: Connection, name: str) -> tuple[int, int | None, str | None]:
    row = await conn.fetchrow(_LOCK, name)
    assert row is not None, f"projection {name} is not registered"
    return row[0], row[1], row[2]


async def start_build(conn: Connection, subscriber: Subscriber) -> int:
    """The generation to build: the one an interrupted rebuild left, or the next one."""
    async with conn.transaction():
        await conn.execute(_REGISTER, subscriber.name, subscriber.version)
        generation, building, _ = await _locked(conn, subscriber.name)
        target = building or generation + 1
        if building is None:
            await conn.execute(_START_BUILD, subscriber.name, target)
            for name in build_consumers(subscriber, target):
                await conn.execute(_FORGET, name)
        await _ensure_tables(conn, subscriber, target)
    return target


async def switch(conn: Connection, subscriber: Subscriber, target: int) -> int:
    """Make ``target`` the live generation, atomically; drop the old one. Returns the old."""
    async with conn.transaction():
        generation, building, _ = await _locked(conn, subscriber.name)
        if building != target:
            raise RuntimeError(
                f"projection {subscriber.name!r} is not building generation {target}"
            )
        for live, build in zip(
            live_consumers(subscriber), build_consumers(subscriber, target), strict=True
        ):
            await conn.execute(q.FENCE_LEASE, live)  # a running live consumer reloads
            await conn.execute(q.NOTIFY_CONTROL, live)
            await conn.execute(_COPY_POSITION, live, build)
            await conn.execute(_DROP_DEAD_LETTERS, live)
            await conn.execute(_MOVE_DEAD_LETTERS, live, build)
            await conn.execute(_FORGET, build)
            await conn.execute(_FORGET_LEASE, build)
        await _point_views(conn, subscriber, target)
        await conn.execute(_SWITCH, subscriber.name, target, subscriber.version)
    for model in subscriber.read_models:
        await conn.execute(f"DROP TABLE IF EXISTS {physical(model, generation)}")
    log.info("projection switched", projection=subscriber.name, generation=target, old=generation)
    return generation


async def holders(conn: Connection, subscriber: Subscriber) -> list[str]:
    """Owners of the projector's live consumers whose leases are current (running workers)."""
    rows = await conn.fetch(q.LIVE_HOLDERS, live_consumers(subscriber))
    return sorted({row["owner"] for row in rows})


async def rebuild_in_place(conn: Connection, subscriber: Subscriber) -> None:
    """Truncate the live tables and replay from 0 (readers see the tables refill).

    Each live consumer is fenced, set to 0 and marked as refilling up to its category's head
    (it reports "rebuilding" until it has caught up); a running worker is told at once.
    """
    async with conn.transaction():
        await conn.execute(_REGISTER, subscriber.name, subscriber.version)
        generation, _, _ = await _locked(conn, subscriber.name)
        for slot in subscriber.slots():
            await conn.execute(q.FENCE_LEASE, slot.name)
            await conn.execute(_ZERO_POSITION, slot.name)
            await conn.execute(q.START_REFILL, slot.name, slot.category)
            await conn.execute(_DROP_DEAD_LETTERS, slot.name)
            await conn.execute(q.NOTIFY_CONTROL, slot.name)
        for model in subscriber.read_models:
            await conn.execute(f"TRUNCATE {physical(model, generation)}")
        await conn.execute(
            "UPDATE worker.projections SET code_version = $2 WHERE name = $1",
            subscriber.name,
            subscriber.version,
        )
    log.info("projection truncated for replay", projection=subscriber.name, generation=generation)
