"""Applying a consumer's batches exactly once, and what happens when a handler fails.

Each batch is applied in one transaction together with the new position (exactly once into
PostgreSQL read models). When a handler fails, the transaction is rolled back; the messages
before the failing one are applied again as a batch, the failing one is retried on its own and,
if it keeps failing, parked (or the consumer stops), and the rest continue as a batch.

The transaction begins with the first statement a batch runs. A batch that ran none (its
handlers wrote nothing in the database) has nothing to apply exactly once: while more batches
follow (the consumer is catching up), its position may wait for the next batch that writes, for
the consumer to catch up, or for ``position_interval`` seconds, whichever comes first
(``commit_position``). A crash in that window hands those messages to the handlers again, as
the outside effects of every handler may be (at least once).

A projector's full batches may commit behind the next one's handlers
(``worker.engine.pipeline``); the next batch is read and validated meanwhile
(``worker.engine.read_ahead``); the handlers' loop is ``worker.engine.handling``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from worker.engine.context import Context
from worker.engine.cursor import Applied
from worker.engine.failing import Retries
from worker.engine.fencing import check_held
from worker.engine.handling import (
    Handling,
    flush,
    handle_all,
    handle_concurrently,
    handle_traced,
)
from worker.engine.outcomes import FlushFailed, HandlerFailed, write_failure
from worker.engine.pipeline import CommitPipeline, committed
from worker.engine.read_ahead import ReadAhead
from worker.engine.retry import is_transient
from worker.engine.routes import route_table
from worker.engine.spans import Spans
from worker.engine.stats import ConsumerStats
from worker.store.transactions import begun, plain

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from worker.engine.backend import Backend, ConsumerLease
    from worker.engine.cursor import Standpoint
    from worker.engine.dead_letters import Failure
    from worker.engine.declared import Declared
    from worker.engine.pipeline import PendingCommit
    from worker.engine.subscriber import Slot
    from worker.engine.tuning import ConsumerOptions
    from worker.store.message import Message
    from worker.store.types import Connection

__all__ = ["Applied", "Batches", "FlushFailed", "HandlerFailed"]


class Batches:
    """Applies one consumer's batches (see the module doc).

    Its transactions, parked messages and read-model tables come from outside (PostgreSQL in
    the worker, the in-memory stand-ins of ``worker.testing`` in tests), so the same code
    applies batches on both.
    """

    def __init__(
        self,
        name: str,
        slot: Slot,
        instance: object,
        backend: Backend,
        lease: ConsumerLease,
        options: ConsumerOptions,
        cursor: Standpoint,
        applied: Callable[[Applied], None],
        log: Any,
    ) -> None:
        """Consumer ``name``'s batches of ``slot`` (its handlers on ``instance``), on
        ``backend``, under ``lease``; ``cursor`` says where the consumer stands, ``applied``
        is told what each batch did (the consumer moves its cursor)."""
        subscriber = slot.subscriber
        self.name = name
        # The read models its handlers may use (None: any).
        self.declared: Declared | None = subscriber.declared
        self._position_interval = options.position_interval
        self._more_follow = False  # a full batch is applied: its position may wait
        self._concurrency = subscriber.concurrent
        self.routes = route_table(subscriber, instance)
        self._transactions = backend.transactions
        self._store = backend.store
        self._parked = backend.parked
        self._tables = backend.tables
        self._positions = backend.positions
        self._lease = lease
        self._policy = options.policy
        self.cursor = cursor
        self._applied = applied
        self.stats = ConsumerStats()  # what it measures, for the metrics
        self._fence = (lease, backend.positions, name)
        self._log = log
        self.ahead = ReadAhead(self.routes)
        self.spans = Spans.of(name)  # tracing on or off: decided once, here
        self.retries = Retries(
            name,
            self._fence,
            self._policy,
            self.stats,
            self.spans,
            self.apply,
            self._park,
            self.drain,
            log,
        )
        # A projector's full batches may commit behind the next one (``worker.engine.pipeline``).
        behind = backend.commit_behind and bool(subscriber.read_models)
        pipeline = CommitPipeline(self._write, self.apply, self.process, log)
        self.pipeline = pipeline if behind else None

    async def process(self, batch: Sequence[Message], *, via: CommitPipeline | None = None) -> None:
        """Apply a batch exactly once; isolate and retry or park a failing message. ``via``:
        the batch may first try to commit behind the next one (see ``CommitPipeline``)."""
        attempt = 0
        while batch:
            try:
                await self.apply(batch, via=via)
                return
            except FlushFailed:
                for message in batch:  # one at a time, so the culprit is isolated
                    await self.process([message])
                return
            except HandlerFailed as failed:
                via = None
                head, bad = batch[: failed.index], batch[failed.index]
                if head:
                    await self.process(head)
                await self.retries.retry_or_park(bad, failed.error)
                batch, attempt = batch[failed.index + 1 :], 0
            except Exception as error:
                if not is_transient(error):
                    raise
                via = None
                attempt += 1
                self.stats.transient_errors += 1
                delay = self._policy.backoff(attempt)
                self._log.warning(
                    "transient failure; retrying batch",
                    error=str(error),
                    attempt=attempt,
                    delay=round(delay, 3),
                )
                await anyio.sleep(delay)

    async def process_full(self, batch: Sequence[Message]) -> None:
        """``process`` a full batch, more to follow: its position may wait (see the module
        doc), and a projector's may commit behind the next one."""
        self._more_follow = True
        try:
            await self.process(batch, via=self.pipeline)
        finally:
            self._more_follow = False

    async def apply(self, batch: Sequence[Message], *, via: CommitPipeline | None = None) -> None:
        """One transaction: every message's handlers, the read-model changes, the position.
        ``via``: the changes, position and commit may go on behind the next batch."""
        routes = self.routes
        if not any(message[2] in routes for message in batch):
            await self.drain()
            await self._pass(batch)
            return
        if via is not None and via.open:
            await via.apply(batch)
            return
        await self.drain()
        await self._write(batch)

    async def drain(self) -> None:
        """Wait for the batch committing behind, if any (see ``CommitPipeline.drain``)."""
        if self.pipeline is not None:
            await self.pipeline.drain()

    async def _write(
        self,
        batch: Sequence[Message],
        pending: PendingCommit | None = None,
        earlier: PendingCommit | None = None,
    ) -> None:
        """``apply``'s transaction; with ``pending``, one that commits behind: it begins after
        ``earlier`` has committed, and once its handlers are done (and ``earlier`` committed)
        ``pending.handled`` lets the consumer go on while it writes. With tracing on, in a
        span of its own (``worker.engine.spans``)."""
        if self.spans is None:
            await self._transaction(batch, pending, earlier)
            return
        with self.spans.batch(batch):
            await self._transaction(batch, pending, earlier)

    async def _transaction(
        self,
        batch: Sequence[Message],
        pending: PendingCommit | None,
        earlier: PendingCommit | None,
    ) -> None:
        """See ``_write``."""
        committing = False
        try:
            after = None if pending is None else lambda: committed(earlier)
            async with self._transactions.lazy(after=after) as conn:
                started = time.perf_counter()
                ctx = self.context(conn, batch[0])
                queued = await self._handle(conn, ctx, batch)
                if pending is None:
                    self.ahead.batch_waits()  # the next batch may be validated meanwhile
                else:
                    # (The next batch is not validated ahead meanwhile: its validation would
                    # hold up the batch committing behind, which is what holds this one up.)
                    await committed(earlier)
                    if ctx.touched() or begun(conn):  # something to write: behind the next
                        pending.writing = True
                        pending.handled.set()
                await flush(ctx, len(batch))
                handled = time.perf_counter()
                if not begun(conn):  # nothing to commit but the position: on its own, or later
                    now = not self._may_wait()
                    if now:
                        await self._commit_position(plain(conn), batch[-1].global_position)
                    self._committed(batch, started, handled, queued, now=now)
                    return
                await self._commit_position(conn, batch[-1].global_position)
                committing = True
        except Exception as error:
            # COMMIT itself refused the batch (a deferred constraint a handler's writes
            # broke): like a failed flush, which message did it is found one at a time.
            failed = write_failure(len(batch), error) if committing else None
            if failed is None:
                raise
            raise failed from error
        self._committed(batch, started, handled, queued)

    async def _handle(self, conn: Connection, ctx: Context, batch: Sequence[Message]) -> int:
        """Every message's handlers (side by side with ``concurrency``); how many were parked
        behind a parked stream."""
        pipeline = self.pipeline
        handling = Handling(
            self.routes,
            self.cursor.parked,
            self._park_queued,
            self.ahead.ready,
            pipeline is not None and pipeline.committing(),
            self.stats,
            self.spans,
            self.retries.attempt,
        )
        if self._concurrency is None:
            if self.spans is not None:
                return await handle_traced(handling, conn, ctx, batch, self.spans)
            return await handle_all(handling, conn, ctx, batch)
        return await handle_concurrently(handling, conn, ctx, batch, self._concurrency)

    async def _park_queued(self, conn: Connection, message: Message) -> None:
        """Park ``message`` behind its parked stream (in the batch's transaction)."""
        await self._parked.park(conn, self.name, message, None)

    async def _pass(self, batch: Sequence[Message]) -> None:
        """A batch no handler takes: only the position moves."""
        started = time.perf_counter()
        now = not self._may_wait()
        if now:  # one statement of its own: the compare-and-set needs no BEGIN/COMMIT
            async with self._transactions.statement() as conn:
                await self._commit_position(conn, batch[-1].global_position)
        self._committed(batch, started, started, 0, now=now)

    def _may_wait(self) -> bool:
        """Whether a batch that wrote nothing may leave its position for later (see the
        module's doc)."""
        return (
            self._more_follow
            and time.monotonic() - self.cursor.committed_at < self._position_interval
        )

    async def _commit_position(self, conn: Connection, position: int) -> None:
        """Move the committed position to ``position`` on ``conn`` (a compare-and-set with the
        position last committed and the lease's epoch), unless the lease could have run out."""
        check_held(self._lease, self.name)
        await self._positions.commit(
            conn, self.name, position, self._lease.epoch, expected=self.cursor.committed
        )

    async def commit_position(self) -> None:
        """Commit the position of batches that left it for later, if any (before the consumer
        waits, pauses, stops or reports it)."""
        await self.drain()
        position = self.cursor.position
        if position == self.cursor.committed:
            return
        async with self._transactions.statement() as conn:
            await self._commit_position(conn, position)
        self._applied(Applied(position))

    def _committed(
        self,
        batch: Sequence[Message],
        started: float,
        handled: float,
        queued: int,
        *,
        now: bool = True,
    ) -> None:
        """Tell the consumer ``batch`` is handled (``queued``: messages parked behind others;
        ``now``: its position committed too, not left for later)."""
        self.stats.batch(started, handled, time.perf_counter(), batch[0].time.timestamp())
        position = batch[-1].global_position
        self._applied(Applied(position, now, len(batch), queued))
        self._log.debug("batch handled", messages=len(batch), position=position)

    def context(self, conn: Connection, first: Message) -> Context:
        """A batch's context; exact (replay-safe) when the batch repeats applied messages."""
        return Context(
            self.name,
            conn,
            self._store,
            generation=self.cursor.generation,
            exact=first.global_position <= self.cursor.high_water,
            tables=self._tables,
            declared=self.declared,
        )

    async def _park(self, message: Message, failure: Failure) -> None:
        await self.drain()
        async with self._transactions.transaction() as conn:
            await self._parked.park(conn, self.name, message, failure)
            await self._commit_position(conn, message.global_position)
        self._applied(Applied(message.global_position, True, 1, 1, message.stream_name))
