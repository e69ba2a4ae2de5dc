"""Running a projection rebuild: blue/green (default) or in place, with progress reports."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker.engine.consumer import Consumer
from worker.engine.positions import PostgresPositionStore
from worker.engine.wakeups import Waker
from worker.errors import WorkerError
from worker.read import generations as projection
from worker.store import read_schema
from worker.store.message_store import MessageStore

if TYPE_CHECKING:
    from collections.abc import Callable

    import asyncpg

    from worker.domain import Domain
    from worker.engine.subscriber import Slot, Subscriber
    from worker.ops.settings import WorkerSettings

log = structlog.get_logger("worker.rebuild")


def find_projector(domain: Domain, name: str) -> Subscriber:
    """The projector named ``name`` that owns read models, or a clear error."""
    for subscriber in domain.subscribers:
        if subscriber.name == name:
            if not subscriber.read_models:
                raise WorkerError(
                    f"{name!r} declares no read models: nothing to rebuild (use `worker reset`)"
                )
            return subscriber
    names = ", ".join(s.name for s in domain.subscribers if s.read_models) or "none"
    raise WorkerError(f"no projection named {name!r} (projections: {names})")


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
    async with anyio.create_task_group() as tg:
        for consumer in consumers:
            tg.start_soon(partial(consumer.run, stop, until_caught_up=True))
        if on_progress is not None:
            while any(c.state not in ("done", "stopped") for c in consumers):
                on_progress(sum(min(c.position, heads[c.category]) for c in consumers), total)
                await anyio.sleep(0.2)
            on_progress(total, total)
    stopped = [c.name for c in consumers if c.state == "stopped"]
    if stopped:
        raise WorkerError(f"rebuild halted: consumers stopped on failure: {', '.join(stopped)}")


@dataclass(frozen=True)
class RebuildOutcome:
    """How a rebuild ended: the live generation, and who refills it when a running worker
    took an in-place rebuild over (``None`` when this process did the work)."""

    generation: int
    refilled_by: list[str] | None = None


async def rebuild(
    domain: Domain,
    dsn: str,
    pool: asyncpg.Pool[Any],
    settings: WorkerSettings,
    subscriber: Subscriber,
    *,
    in_place: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> RebuildOutcome:
    """Rebuild a projection; blue/green unless ``in_place``.

    In place beside a running worker, the tables are emptied and that worker, woken at once,
    refills them; otherwise this process replays the events itself.
    """
    from worker.engine.runner import consumer_options  # runner imports this module's callers

    store = MessageStore(pool)
    heads = await _heads(store, subscriber)

    def consumer(slot: Slot, generation: int | None) -> Consumer:
        return Consumer(
            subscriber,
            slot.category,
            member=slot.member,
            dsn=dsn,
            pool=pool,
            store=store,
            positions=PostgresPositionStore(pool),
            waker=Waker(),
            options=consumer_options(settings, subscriber),
            generation=generation,
        )

    async with pool.acquire() as conn:
        await read_schema.ensure(conn, settings.read_model_schema)
        if in_place:
            running = await projection.holders(conn, subscriber)
            await projection.rebuild_in_place(conn, subscriber)
            if running:
                log.info("a running worker refills the projection", holders=running)
            else:
                live = [consumer(slot, None) for slot in subscriber.slots()]
                await run_consumers(live, heads, on_progress)
            found = await projection.state(conn, subscriber.name)
            return RebuildOutcome(found[0] if found else 1, running or None)
        target = await projection.start_build(conn, subscriber)
        log.info("rebuilding projection", projection=subscriber.name, generation=target)
        await run_consumers(
            [consumer(slot, target) for slot in subscriber.slots()], heads, on_progress
        )
        await projection.switch(conn, subscriber, target)
    return RebuildOutcome(target)
