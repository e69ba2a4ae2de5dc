"""What an operator does to consumers: find them by name, reset, pause and resume, replay and
discard parked messages, rebuild a projection (and hand it over to a running worker).

One place for the CLI, a console and tests alike: each action takes a pool (and the domain's
subscriptions where names are resolved), does the work, and returns what happened for the
caller to print. Names that are none of the domain's are a ``UsageError`` (exit 2) listing the
known ones; an action that cannot be done is a ``WorkerError`` (exit 1) saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker.engine import pauses
from worker.engine.dead_letters import PostgresParkedMessages
from worker.engine.factory import build_consumer
from worker.engine.lease import Lease, owner_id
from worker.engine.positions import PostgresPositionStore, reset_held
from worker.engine.rebuild import RebuildOutcome, check_rights, find_projector, rebuild
from worker.errors import ReplayFailedError, UsageError, WorkerError
from worker.store import queries as store_queries
from worker.store.message_store import MessageStore

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import asyncpg

    from worker.engine.settings import EngineSettings
    from worker.engine.subscriber import Slot, Subscriber, Subscriptions
    from worker.store.database import Database

log = structlog.get_logger("worker.operations")

# Seconds a replay waits for a running worker to replay a stream it was asked to.
REPLAY_WAIT = 60.0


# -- names ---------------------------------------------------------------------------------


def slots(domain: Subscriptions) -> dict[str, Slot]:
    """Every consumer of the domain by name, in the domain's order."""
    return {slot.name: slot for s in domain.subscribers for slot in s.slots()}


def slot_named(domain: Subscriptions, name: str) -> Slot:
    """The consumer named ``name``; ``UsageError`` listing the known ones when there is none."""
    known = slots(domain)
    if name not in known:
        raise UsageError(f"no consumer named {name!r}; known: {', '.join(sorted(known)) or 'none'}")
    return known[name]


def consumers_named(domain: Subscriptions, names: Sequence[str], option: str = "") -> list[str]:
    """The consumers ``names`` stand for (a subscriber stands for all of its consumers), in
    the domain's order; ``UsageError`` listing the known names for an unknown one (``option``,
    the command-line option that gave them, starts the line)."""
    owned = [(slot.subscriber.name, name) for name, slot in slots(domain).items()]
    known = {s.name for s in domain.subscribers} | {name for _, name in owned}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(
            f"{option + ' ' if option else ''}{', '.join(unknown)}: no such consumer or "
            f"subscriber; known: {', '.join(sorted(known)) or 'none'}"
        )
    return [slot for owner, slot in owned if owner in names or slot in names]


async def check_parked_consumer(
    pool: asyncpg.Pool[Any], domain: Subscriptions, name: str | None
) -> None:
    """``UsageError`` when ``name`` is none of the domain's consumers and has no parked
    messages (a consumer since removed from the code may still have some)."""
    if name is None or name in slots(domain) or name in await PostgresParkedMessages(pool).counts():
        return
    slot_named(domain, name)


# -- positions and pauses ------------------------------------------------------------------


async def reset(
    pool: asyncpg.Pool[Any],
    dsn: str | Database,
    domain: Subscriptions,
    consumer: str,
    to: int,
    *,
    wait: bool = False,
    force: bool = False,
) -> int:
    """Set ``consumer``'s position to ``to`` (it resumes with the message after it); the
    position before. Under its lease when free; beside a running worker holding it only with
    ``wait`` (``reset_held``); beyond the category's head only with ``force``."""
    category = slot_named(domain, consumer).category
    head = await MessageStore(pool).category_head(category) or 0
    if to > head and not force:
        raise UsageError(
            f"--to {to} is beyond the head of category {category!r} ({head}): {consumer} "
            "would skip every message written until the store passes it; pass --force to set "
            "it anyway"
        )
    lease = Lease(dsn, consumer)
    try:
        before = await _set_position(pool, lease, consumer, to, wait)
    finally:
        await lease.release()
    by = owner_id()
    log.info("position reset", consumer=consumer, old=before, new=to, by=by, holder=lease.holder)
    return before


async def _set_position(
    pool: asyncpg.Pool[Any], lease: Lease, consumer: str, to: int, wait: bool
) -> int:
    if await lease.try_acquire():
        positions = PostgresPositionStore(pool)
        before = await positions.load(consumer)
        await positions.set(consumer, to)
        return before
    if wait:
        return await reset_held(pool, consumer, to)
    raise WorkerError(
        f"consumer {consumer!r} is held by a running worker ({lease.holder}); stop it, or "
        "pass --wait to set the position under it"
    )


@dataclass(frozen=True)
class Changed:
    """The consumers an action named, and those it changed (the others already were so)."""

    named: list[str]
    changed: list[str]


async def pause(
    pool: asyncpg.Pool[Any], domain: Subscriptions, names: Sequence[str], reason: str | None
) -> Changed:
    """Pause the consumers ``names`` stand for (stored: it survives restarts)."""
    named = consumers_named(domain, names)
    return Changed(named, await pauses.pause(pool, named, owner_id(), reason))


async def resume(pool: asyncpg.Pool[Any], domain: Subscriptions, names: Sequence[str]) -> Changed:
    """Resume the consumers ``names`` stand for."""
    named = consumers_named(domain, names)
    return Changed(named, await pauses.resume(pool, named))


# -- parked messages -----------------------------------------------------------------------


async def parked(pool: asyncpg.Pool[Any], dead_letter_id: int) -> dict[str, Any]:
    """One parked message's row; ``WorkerError`` when there is none with that id."""
    row = await PostgresParkedMessages(pool).show(dead_letter_id)
    if row is None:
        raise WorkerError(f"no parked message with id {dead_letter_id}")
    return row


async def parked_message(pool: asyncpg.Pool[Any], dead_letter_id: int) -> dict[str, Any] | None:
    """One parked message's row with the stored message itself under ``"message"`` (its
    ``data`` and ``metadata``; ``None`` when the store no longer has it); ``None`` when there is
    no parked message with that id."""
    row = await PostgresParkedMessages(pool).show(dead_letter_id)
    if row is not None:
        row["message"] = await message_of(pool, row)
    return row


async def message_of(pool: asyncpg.Pool[Any], row: dict[str, Any]) -> dict[str, Any] | None:
    """The stored message a parked message's row names (``data``, ``metadata``, ``time``);
    ``None`` when the store no longer has it."""
    message = await pool.fetchrow(store_queries.MESSAGE_BODY, row["global_position"])
    return None if message is None else dict(message)


# Says how to name what a replay or a discard acts on.
NAMED = "give a parked message id, or both --consumer and --stream"


async def parked_target(
    pool: asyncpg.Pool[Any], dead_letter_id: int | None, consumer: str | None, stream: str | None
) -> tuple[str, str]:
    """The (consumer, stream) a replay acts on: the parked message's, or the ones named;
    ``UsageError`` when neither is given whole."""
    if dead_letter_id is not None:
        row = await parked(pool, dead_letter_id)
        return row["consumer"], row["stream_name"]
    if consumer is None or stream is None:
        raise UsageError(NAMED)
    return consumer, stream


@dataclass(frozen=True)
class Replayed:
    """What a replay did: messages replayed, where, and how many of the stream stay parked
    (``None`` when the running worker holding the consumer replayed them)."""

    count: int
    stream: str
    left: int | None


async def replay(
    pool: asyncpg.Pool[Any],
    dsn: str | Database,
    settings: EngineSettings,
    domain: Subscriptions,
    consumer: str,
    stream: str,
    within: float = REPLAY_WAIT,
) -> Replayed:
    """Replay a stream's parked messages under the consumer's lease: here when it is free,
    else by the process that holds it (waiting up to ``within`` seconds for it)."""
    slot = slot_named(domain, consumer)
    built = build_consumer(slot, dsn=dsn, pool=pool, settings=settings)
    if await built.lease.try_acquire():
        try:
            done = await built.replay(stream)
        finally:
            await built.lease.release()
        left = await PostgresParkedMessages(pool).parked_of_stream(consumer, stream)
        return Replayed(done, stream, len(left))
    marked = await PostgresParkedMessages(pool).request_replay(consumer, stream)
    await _await_replay(pool, consumer, stream, within)
    return Replayed(marked, stream, None)


async def _await_replay(pool: asyncpg.Pool[Any], consumer: str, stream: str, within: float) -> None:
    """Wait until the process holding the consumer has replayed the stream (nothing of it is
    parked) or failed (the request is withdrawn: ``ReplayFailedError`` with the new error)."""
    with anyio.move_on_after(within):
        # Another process does the work: its progress is only visible in the database.
        parked = PostgresParkedMessages(pool)
        while (state := await parked.replay_state(consumer, stream)) is not None:
            if not state.requested:
                raise ReplayFailedError(consumer, stream, state.position, state.error)
            await anyio.sleep(0.2)
        return
    raise WorkerError(
        f"replay of {stream} requested, but the worker holding consumer {consumer} has not "
        f"done it within {within:.0f} s; it will when it gets to it (see `worker status`)"
    )


async def discard_stream(
    pool: asyncpg.Pool[Any], domain: Subscriptions, consumer: str, stream: str
) -> int:
    """Drop every parked message of a consumer's stream; how many."""
    await check_parked_consumer(pool, domain, consumer)
    return await PostgresParkedMessages(pool).discard(consumer, stream)


async def discard_one(pool: asyncpg.Pool[Any], dead_letter_id: int) -> tuple[dict[str, Any], int]:
    """Drop one parked message: its row, and how many later messages of its stream stay
    parked behind where it was."""
    parked = PostgresParkedMessages(pool)
    row = await parked.show(dead_letter_id)
    if row is None or not await parked.discard_one(dead_letter_id):
        raise WorkerError(f"no parked message with id {dead_letter_id}")
    left = await parked.parked_of_stream(row["consumer"], row["stream_name"])
    return row, len(left)


# -- rebuilds ------------------------------------------------------------------------------


def projections_to_rebuild(domain: Subscriptions, name: str | None) -> list[Subscriber]:
    """The projection named ``name``, or with ``None`` every one that declares read models."""
    if name is not None:
        return [find_projector(domain.subscribers, name)]
    chosen = [s for s in domain.subscribers if s.read_models]
    if not chosen:
        raise WorkerError("no projection in this domain declares read models")
    return chosen


async def check_rebuild_rights(
    pool: asyncpg.Pool[Any], subscribers: Sequence[Subscriber], *, in_place: bool
) -> None:
    """Refuse, before anything is rebuilt, when this role may not rebuild them all (the owner
    role's work)."""
    async with pool.acquire() as conn:
        for subscriber in subscribers:
            await check_rights(conn, subscriber, in_place=in_place)


async def rebuild_projection(
    pool: asyncpg.Pool[Any],
    dsn: str | Database,
    settings: EngineSettings,
    subscriber: Subscriber,
    *,
    in_place: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> RebuildOutcome:
    """Rebuild a projection from position 0 (blue/green unless ``in_place``; in place beside a
    running worker, that worker refills the emptied tables: ``RebuildOutcome.refilled_by``)."""
    return await rebuild(
        dsn, pool, settings, subscriber, in_place=in_place, on_progress=on_progress
    )
