"""Rebuilding a projection: blue/green (default) or in place, with progress reports.

A blue/green rebuild fills generation n+1 from position 0 with consumers named
``{consumer}#g{n+1}`` while generation n keeps serving, then switches in one transaction: the
views move to the new tables, the live consumers' positions become the builders' and their leases
are fenced (a running worker reloads and carries on with the new generation); the old tables are
dropped after. An interrupted rebuild resumes from its builders' positions. In place, the live
tables are emptied and the live consumers replay from 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker.engine import queries as q
from worker.engine.closing import close_all
from worker.engine.factory import build_consumer
from worker.engine.lifecycle import Until
from worker.engine.state import ConsumerState
from worker.errors import PrivilegeError, UsageError, WorkerError
from worker.read import generations
from worker.store import privileges, read_schema
from worker.store.message_store import MessageStore

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import asyncpg

    from worker.engine.consumer import Consumer
    from worker.engine.settings import EngineSettings
    from worker.engine.subscriber import Subscriber
    from worker.store.database import Database
    from worker.store.types import Connection

log = structlog.get_logger("worker.rebuild")


def find_projector(subscribers: Sequence[Subscriber], name: str) -> Subscriber:
    """The projector named ``name`` that owns read models, or a clear error."""
    for subscriber in subscribers:
        if subscriber.name == name:
            if subscriber.process is not None:
                raise WorkerError(
                    f"{name!r} is a process manager: it is never rebuilt by replaying history "
                    "(its handlers issue commands); `worker reset` moves its consumers, with "
                    "confirmation"
                )
            if not subscriber.read_models:
                raise WorkerError(
                    f"{name!r} declares no read models: nothing to rebuild (use `worker reset`)"
                )
            return subscriber
    names = ", ".join(s.name for s in subscribers if s.read_models) or "none"
    raise UsageError(f"no projection named {name!r} (projections: {names})")


async def _heads(store: MessageStore, subscriber: Subscriber) -> dict[str, int]:
    return {c: await store.category_head(c) or 0 for c in subscriber.categories}


async def run_consumers(
    consumers: list[Consumer],
    heads: dict[str, int],
    on_progress: Callable[[int, int], None] | None,
    stop: anyio.Event | None = None,
) -> None:
    """Run consumers until each is caught up, reporting (done, total) as they go."""
    stop = stop or anyio.Event()
    total = sum(heads[c.category] for c in consumers)  # group members each go to the head
    try:
        async with anyio.create_task_group() as tg:
            for consumer in consumers:
                tg.start_soon(partial(consumer.run, Until(stop, caught_up=True)))
            if on_progress is not None:
                while any(
                    c.state not in (ConsumerState.DONE, ConsumerState.STOPPED) for c in consumers
                ):
                    on_progress(sum(min(c.position, heads[c.category]) for c in consumers), total)
                    await anyio.sleep(0.2)
                on_progress(total, total)
    finally:
        await close_all(consumers)
    stopped = [c.name for c in consumers if c.state == ConsumerState.STOPPED]
    if stopped:
        raise WorkerError(f"rebuild halted: consumers stopped on failure: {', '.join(stopped)}")


@dataclass(frozen=True)
class RebuildOutcome:
    """How a rebuild ended: the live generation, and who refills it when a running worker
    took an in-place rebuild over (``None`` when this process did the work)."""

    generation: int
    refilled_by: list[str] | None = None


async def rebuild(
    dsn: str | Database,
    pool: asyncpg.Pool[Any],
    settings: EngineSettings,
    subscriber: Subscriber,
    *,
    in_place: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> RebuildOutcome:
    """Rebuild a projection; blue/green unless ``in_place``.

    In place beside a running worker, the tables are emptied and that worker, woken at once,
    refills them; otherwise this process replays the events itself.
    """
    heads = await _heads(MessageStore(pool), subscriber)

    def consumers(generation: int | None) -> list[Consumer]:
        return [
            build_consumer(
                slot,
                dsn=dsn,
                pool=pool,
                settings=settings,
                generation=generation,
                pausable=False,
            )
            for slot in subscriber.slots()
        ]

    async with pool.acquire() as conn:
        await read_schema.ensure(conn, settings.read_model_schema)
        await check_rights(conn, subscriber, in_place=in_place)
        if in_place:
            running = await holders(conn, subscriber)
            await empty_for_refill(conn, subscriber)
            if running:
                log.info("a running worker refills the projection", holders=running)
            else:
                await run_consumers(consumers(None), heads, on_progress)
            found = await generations.state(conn, subscriber.name)
            return RebuildOutcome(found[0] if found else 1, running or None)
        target = await start_build(conn, subscriber)
        log.info("rebuilding projection", projection=subscriber.name, generation=target)
        await run_consumers(consumers(target), heads, on_progress)
        await switch(conn, subscriber, target)
    return RebuildOutcome(target)


def _builders(subscriber: Subscriber, generation: int) -> list[tuple[str, str]]:
    """(live consumer, the consumer that builds ``generation`` for it), per slot."""
    return [(slot.name, str(slot.consumer.building(generation))) for slot in subscriber.slots()]


async def check_rights(conn: Connection, subscriber: Subscriber, *, in_place: bool) -> None:
    """One ``PrivilegeError`` when this role may not rebuild the projection: a rebuild creates,
    replaces and drops tables (or empties them), which is the owner role's work."""
    user, lacking = await generations.rebuild_rights_missing(
        conn, subscriber.projection, in_place=in_place
    )
    if lacking:
        command = f"worker rebuild {subscriber.name}" + (" --in-place" if in_place else "")
        raise PrivilegeError(
            f"`{command}` needs the owner role (the one that ran `worker db install`): role "
            f'"{user}" lacks {", ".join(lacking[:2])} ({read_schema.ROLES_HELP})'
        )


async def start_build(conn: Connection, subscriber: Subscriber) -> int:
    """The generation to build: the one an interrupted rebuild left (its consumers resume from
    their positions), or the next one (its consumers start from 0). The runtime roles that
    ``worker db grant`` recorded may write its tables, so a running worker carries on with them
    after the switch."""
    async with conn.transaction():
        target, fresh = await generations.begin_build(conn, subscriber.projection)
        if fresh:
            for _, builder in _builders(subscriber, target):
                await conn.execute(q.FORGET_POSITION, builder)
        await privileges.grant_tables(conn, generations.tables(subscriber.projection, target))
    return target


async def switch(conn: Connection, subscriber: Subscriber, target: int) -> int:
    """Make ``target`` the live generation in one transaction: views, positions (the builders'
    become the live consumers'), parked messages; fence the live consumers (a running worker
    reloads at once). Drop the old generation after. Returns the old generation."""
    projection = subscriber.projection
    async with conn.transaction():
        generation, building, _ = await generations.lock(conn, projection)
        if building != target:
            raise WorkerError(f"projection {subscriber.name!r} is not building generation {target}")
        for live, builder in _builders(subscriber, target):
            await conn.execute(q.FENCE_LEASE, live)
            await conn.execute(q.NOTIFY_CONTROL, live)
            await conn.execute(q.COPY_POSITION, live, builder)
            await conn.execute(q.DROP_DEAD_LETTERS, live)
            await conn.execute(q.MOVE_DEAD_LETTERS, live, builder)
            await conn.execute(q.FORGET_POSITION, builder)
            await conn.execute(q.FORGET_LEASE, builder)
        await generations.go_live(conn, projection, target)
        await privileges.grant_tables(conn, generations.views(projection))  # a view made anew
    await generations.drop(conn, projection, generation)
    log.info("projection switched", projection=subscriber.name, generation=target, old=generation)
    return generation


async def holders(conn: Connection, subscriber: Subscriber) -> list[str]:
    """Owners of the projector's live consumers whose leases are current (running workers)."""
    rows = await conn.fetch(q.LIVE_HOLDERS, [slot.name for slot in subscriber.slots()])
    return sorted({row["owner"] for row in rows})


async def empty_for_refill(conn: Connection, subscriber: Subscriber) -> None:
    """Truncate the live tables for a replay from 0 (readers see the tables refill).

    Each live consumer is fenced, set to 0 and marked as refilling up to its category's head
    (it reports "rebuilding" until it has caught up); a running worker is told at once.
    """
    async with conn.transaction():
        generation, _, _ = await generations.lock(conn, subscriber.projection)
        for slot in subscriber.slots():
            await conn.execute(q.FENCE_LEASE, slot.name)
            await conn.execute(q.ZERO_POSITION, slot.name)
            await conn.execute(q.START_REFILL, slot.name, slot.category)
            await conn.execute(q.DROP_DEAD_LETTERS, slot.name)
            await conn.execute(q.NOTIFY_CONTROL, slot.name)
        await generations.empty(conn, subscriber.projection, generation)
    log.info("projection truncated for replay", projection=subscriber.name, generation=generation)
