"""A batch's handlers: every message's, in order, or its partitions' side by side.

The hot loop of the engine: rows are indexed directly (1: stream, 2: type, 4: global position,
5: data, 6: metadata). A message of a parked stream is parked behind it (``queued``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

import anyio.lowlevel

from worker.engine.context import current_context
from worker.engine.outcomes import HandlerFailed, handler_failure, write_failure
from worker.engine.partitions import (
    PartitionKeyError,
    SerialConnection,
    partitions,
    run_partitions,
)
from worker.engine.routes import at_first_version
from worker.read.handed import handed_to
from worker.store.metadata import SCHEMA_VERSION

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from worker.engine.context import Context
    from worker.engine.partitions import Concurrency
    from worker.engine.routes import Handlers
    from worker.engine.spans import Spans
    from worker.engine.stats import ConsumerStats
    from worker.model.event import BaseEvent
    from worker.store.message import Message
    from worker.store.types import Connection

_YIELD_EVERY = 31  # (mask) handlers let a batch committing behind go on every 32 messages


@dataclass(frozen=True, slots=True)
class Handling:
    """What a batch's handlers run with."""

    routes: dict[str, Handlers]
    parked: Mapping[str, bool]  # parked streams: their messages are parked behind
    park: Callable[[Connection, Message], Awaitable[None]]  # park one behind its stream
    ready: dict[int, BaseEvent]  # events validated ahead, by global position
    yielding: bool  # a batch commits behind: let it go on every so often
    stats: ConsumerStats
    spans: Spans | None = None  # tracing on: a span per message (``handle_traced``)
    attempt: int = 1  # the attempt at the batch's messages (a retry's: 2 and on)


async def handle_all(h: Handling, conn: Connection, ctx: Context, batch: Sequence[Message]) -> int:
    """Every message's handlers; returns how many were parked behind a parked stream."""
    token = current_context.set(ctx)  # logs made by handlers name the message
    handed = handed_to.set(ctx.unawaited)  # what its table hands out is checked too
    routes, parked, ready, yielding = h.routes, h.parked, h.ready, h.yielding
    queued = 0
    try:
        for index, message in enumerate(batch):
            if yielding and not index & _YIELD_EVERY:
                await anyio.lowlevel.checkpoint()
            route = routes.get(message[2])
            if route is None:
                continue
            if parked and message[1] in parked:
                await h.park(conn, message)
                queued += 1
                continue
            try:
                event = ready.pop(message[4], None) if ready else None
                if event is None:
                    # ``route.decode``, inline: a message that states no schema version
                    # (or 1) is at a version-1 class's own.
                    meta = message[6]
                    event = (
                        route.validate(message[5] or "{}")
                        if route.upcast is None
                        and (meta is None or SCHEMA_VERSION not in meta or at_first_version(meta))
                        else route.checked(message)
                    )
                ctx.message = message
                if route.single is not None:
                    returned = await route.single(event, ctx)
                elif route.single_sync is not None:
                    returned = route.single_sync(event, ctx)
                else:
                    await route.call_all(event, ctx)
                    returned = None
                if returned is not None or ctx.unawaited:  # (see ``routes.settle``)
                    await route.settle_single(returned, ctx)
            except Exception as error:
                if (failed := handler_failure(index, message, error)) is None:
                    raise
                raise failed from failed.cause
    finally:
        current_context.reset(token)
        handed_to.reset(handed)
        ctx.drop_unawaited()  # a failed handler's writes: they never run
    return queued


async def handle_traced(
    h: Handling, conn: Connection, ctx: Context, batch: Sequence[Message], spans: Spans
) -> int:
    """``handle_all`` with tracing on: every message in a span of its own (see
    ``worker.engine.spans``), decoded and handled as a concurrent batch's are."""
    token = current_context.set(ctx)
    handed = handed_to.set(ctx.unawaited)
    routes, parked, ready = h.routes, h.parked, h.ready
    queued = 0
    try:
        for index, message in enumerate(batch):
            route = routes.get(message[2])
            if route is None:
                continue
            if parked and message[1] in parked:
                await h.park(conn, message)
                spans.parked_behind(message)
                queued += 1
                continue
            event = ready.pop(message[4], None) if ready else None
            run = partial(_handle_one, route, message, index, ctx, event)
            await spans.handle(route, message, h.attempt, run)
    finally:
        current_context.reset(token)
        handed_to.reset(handed)
        ctx.drop_unawaited()
    return queued


async def handle_concurrently(
    h: Handling, conn: Connection, ctx: Context, batch: Sequence[Message], limit: Concurrency
) -> int:
    """``handle_all`` for ``concurrency=n``: the batch's partitions handled up to n at once,
    each in order (see ``worker.engine.partitions``); the first failure stops them all."""
    routes, parked = h.routes, h.parked
    handled: list[int] = []
    queued = 0
    for index, message in enumerate(batch):
        if message[2] not in routes:
            continue
        if parked and message[1] in parked:
            await h.park(conn, message)
            if h.spans is not None:
                h.spans.parked_behind(message)
            queued += 1
            continue
        handled.append(index)
    shared = cast("Connection", SerialConnection(conn))

    async def handle(group: list[int]) -> None:
        view = ctx.partition(shared)
        current_context.set(view)  # this task's own: its logs name its message
        handed_to.set(view.unawaited)
        h.stats.in_flight += 1
        try:
            for n, index in enumerate(group):
                if h.yielding and not n & _YIELD_EVERY:  # (as in ``handle_all``)
                    await anyio.lowlevel.checkpoint()
                message = batch[index]
                event = h.ready.pop(message[4], None) if h.ready else None
                route = routes[message[2]]
                if h.spans is None:
                    await _handle_one(route, message, index, view, event)
                    continue
                run = partial(_handle_one, route, message, index, view, event)
                await h.spans.handle(route, message, h.attempt, run)
        finally:
            h.stats.in_flight -= 1
            view.drop_unawaited()

    try:
        groups = partitions(batch, handled, limit.partition_by)
    except PartitionKeyError as failed:  # that message fails, as if its handler had
        raise HandlerFailed(failed.index, failed.error, failed.error) from failed.error
    await run_partitions(groups, limit.limit, handle)
    return queued


async def _handle_one(
    route: Handlers, message: Message, index: int, ctx: Context, event: BaseEvent | None
) -> None:
    """Decode (unless validated ahead: ``event``) and handle one message."""
    try:
        if event is None:
            event = route.decode(message)
        ctx.message = message
        await route.call_all(event, ctx)
    except Exception as error:
        if (failed := handler_failure(index, message, error)) is None:
            raise
        raise failed from failed.cause


async def flush(ctx: Context, size: int) -> None:
    """Write what the handlers of a batch of ``size`` messages left to write (read-model
    changes); a failure is the batch's (see ``write_failure``)."""
    try:
        await ctx.flush()
    except Exception as error:
        if (failed := write_failure(size, error)) is None:
            raise
        raise failed from error
