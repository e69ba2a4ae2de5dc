"""Parked streams of a running consumer: noticing them, and replaying them on request.

A replay runs under the consumer's lease: each parked message is handled again in its own
transaction that also removes it from the dead letters and checks the lease's epoch. Replays
write nothing of the consumer's cursor: ``refresh`` answers with the parked streams, a replay
with how many messages it handled (or ``ReplayFailedError``); the consumer takes them in.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

from worker.engine.dead_letters import describe
from worker.engine.outcomes import HandlerFailed, handler_failure
from worker.errors import LeaseLostError, ReplayFailedError
from worker.read.handed import handed_to

if TYPE_CHECKING:
    from worker.engine.backend import Backend, ConsumerLease
    from worker.engine.batch import Batches
    from worker.engine.context import Context
    from worker.engine.routes import Handlers
    from worker.store.message import Message
    from worker.store.types import Connection


class Replays:
    """A consumer's parked streams and their replays."""

    def __init__(
        self,
        batches: Batches,
        backend: Backend,
        lease: ConsumerLease,
        refresh_interval: float,
        log: Any,
    ) -> None:
        self._batches, self.name = batches, batches.name
        self._backend, self._lease, self._log = backend, lease, log
        self._parked = backend.parked
        self._refresh_interval, self._refreshed_at = refresh_interval, 0.0

    async def refresh(self, *, force: bool = False) -> dict[str, bool] | None:
        """Reload parked streams now and then (``None`` when not yet due), running any replay
        that was requested; the parked streams after them (stream -> replay requested)."""
        now = time.monotonic()
        if not force and now - self._refreshed_at < self._refresh_interval:
            return None
        self._refreshed_at = now
        await self._batches.drain()  # what a batch committing behind parks counts
        parked = await self._parked.parked_streams(self.name)
        for stream, requested in list(parked.items()):
            if not requested:
                continue
            try:
                await self.replay(stream)
                del parked[stream]
            except ReplayFailedError as failed:  # the request is withdrawn: logged once
                parked[stream] = False
                self._log.error(
                    "replay failed; stream stays parked",
                    stream_name=stream,
                    position=failed.position,
                    replayed=failed.replayed,
                    error=failed.error,
                )
        return parked

    async def replay(self, stream_name: str) -> int:
        """Re-dispatch a stream's parked messages in order; return how many were handled.

        Each message is applied in its own transaction that also removes it from the dead
        letters. A message that fails again stays parked (with those after it) with its new
        error, the stream's replay request is withdrawn, and ``ReplayFailedError`` says where
        and why.
        """
        await self._batches.drain()
        done = 0
        for dead_letter_id, global_position in await self._parked.parked_of_stream(
            self.name, stream_name
        ):
            row = await self._backend.store.message_at(global_position)
            try:
                await self._replay_one(dead_letter_id, row)
            except HandlerFailed as failed:
                position = global_position if row is None else row.position
                error = await self._failed(dead_letter_id, stream_name, position, done, failed)
                raise error from failed.error
            done += 1
        self._log.info("parked stream replayed", stream_name=stream_name, messages=done)
        return done

    async def _failed(
        self, dead_letter_id: int, stream: str, position: int, done: int, failed: HandlerFailed
    ) -> ReplayFailedError:
        """Record the new error on the parked message (under the lease) and withdraw the
        stream's replay request; the error to raise."""
        async with self._backend.transactions.transaction() as conn:
            await self._parked.failed_again(conn, dead_letter_id, failed.error, 1)
            if not await self.lease_current(conn):
                raise LeaseLostError(f"consumer {self.name} lost its lease during a replay")
        error = describe(type(failed.error).__qualname__, str(failed.error))
        return ReplayFailedError(self.name, stream, position, error, done)

    async def _replay_one(self, dead_letter_id: int, message: Message | None) -> None:
        """Handle a parked message again and remove it from the dead letters, in one
        transaction; with tracing on, in a span in the message's own trace."""
        spans = self._batches.spans
        if spans is None or message is None:
            await self._redo(dead_letter_id, message)
            return
        with spans.replay(message):
            await self._redo(dead_letter_id, message)

    async def _redo(self, dead_letter_id: int, message: Message | None) -> None:
        async with self._backend.transactions.transaction() as conn:
            route = None if message is None else self._batches.routes.get(message.type)
            if message is not None and route is not None:
                ctx = self._batches.context(conn, message)
                handed = handed_to.set(ctx.unawaited)
                try:
                    await self._dispatch(route, message, ctx)
                    await ctx.flush()
                except Exception as error:
                    if (failed := handler_failure(0, message, error)) is None:
                        raise
                    raise failed from failed.cause
                finally:
                    handed_to.reset(handed)
                    ctx.drop_unawaited()  # a failed handler's writes: they never run
            await self._parked.replayed(conn, dead_letter_id)
            if not await self.lease_current(conn):
                raise LeaseLostError(f"consumer {self.name} lost its lease during a replay")

    async def _dispatch(self, route: Handlers, message: Message, ctx: Context) -> None:
        spans = self._batches.spans
        if spans is None:
            await route.dispatch(message, ctx)
            return
        await spans.handle(route, message, 1, partial(route.dispatch, message, ctx), nested=True)

    async def lease_current(self, conn: Connection) -> bool:
        """True while this process's lease epoch is the current one (checked in ``conn``)."""
        epoch = await self._backend.positions.lease_epoch_in(conn, self.name)
        return bool(epoch == self._lease.epoch)
