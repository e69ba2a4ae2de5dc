"""Applying a consumer's batches exactly once, and what happens when a handler fails.

Each batch is applied in one transaction together with the new position (exactly once into
PostgreSQL read models). When a handler fails, the transaction is rolled back; the messages
before the failing one are applied again as a batch, the failing one is retried on its own and,
if it keeps failing, parked (or the consumer stops), and the rest continue as a batch.

The transaction begins with the first statement a batch runs. A batch that ran none (its
handlers wrote nothing in the database) has nothing to apply exactly once: while the consumer
is behind, its position may wait for the next batch that writes, for the consumer to catch up,
or for ``position_interval`` seconds, whichever comes first (``commit_position``). A crash in
that window hands those messages to the handlers again, as the outside effects of every
handler may be (at least once).

While a batch waits on the database (its read-model changes and its commit), the next batch,
read ahead meanwhile, is validated into its events: work the handlers would otherwise wait for.
Validation has no effects; an event that fails it is left to the handlers' turn, which fails
it where it always did.

A projector's batches (a subscriber with read models) commit behind while the consumer is
behind: once a full batch's handlers are done, its read-model changes, position and commit go
on in the background while the next batch's handlers run. The next batch writes nothing before
that commit: its first statement, and its own commit, wait for it. Should that commit fail, the
next batch's work is dropped unwritten, and both are applied again the usual way (the failing
one isolated as ever). Read models and positions stay exactly once; what a projector's handlers
do outside the transaction may run again, as any handler's outside effects may.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.lowlevel
from pydantic import ValidationError

from worker.engine import dead_letters
from worker.engine.context import Context, current_context
from worker.engine.partitions import (
    PartitionKeyError,
    SerialConnection,
    partitions,
    run_partitions,
)
from worker.engine.retry import Park, RetryAfter, Stop, is_transient
from worker.engine.routes import at_first_version
from worker.engine.stats import ConsumerStats
from worker.errors import ConsumerStoppedError, LeaseLostError
from worker.model.event import malformed
from worker.read.handed import handed_to
from worker.read.table import Table
from worker.store.metadata import SCHEMA_VERSION
from worker.store.transactions import begun, plain

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from anyio.abc import TaskGroup

    from worker.engine.dead_letters import ParkedMessages
    from worker.engine.declared import Declared
    from worker.engine.lease import Lease
    from worker.engine.partitions import Concurrency
    from worker.engine.positions import PositionStore
    from worker.engine.retry import RetryPolicy
    from worker.engine.routes import Handlers
    from worker.model.event import BaseEvent
    from worker.read.table import TableFactory
    from worker.store.message import Message
    from worker.store.message_store import MessageStore
    from worker.store.transactions import Transactions
    from worker.store.types import Connection


@dataclass
class Cursor:
    """Where a consumer stands; shared by its lifecycle, its batches and its replays."""

    position: int = 0  # the global position last handled (committed, or about to be)
    committed: int = 0  # the global position last committed
    committed_at: float = 0.0  # when (``time.monotonic()``)
    high_water: int = 0  # the highest ever committed (above ``position`` after a reset)
    generation: int = 1  # the table generation its read models write to
    processed: int = 0  # messages this process handled (or parked)
    parked_count: int = 0  # messages this process parked
    parked: dict[str, bool] = field(default_factory=dict)  # parked stream -> replay requested
    stats: ConsumerStats = field(default_factory=ConsumerStats)  # for the metrics


_VALIDATED_AT_ONCE = 64  # messages validated ahead between two turns of the batch's task
_YIELD_EVERY = 31  # (mask) handlers let a batch committing behind go on every 32 messages


class HandlerFailed(Exception):
    """The message at ``index`` of a batch raised ``error`` in a handler."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class FlushFailed(Exception):
    """Writing a batch's read-model changes failed; which message caused it is unknown."""


@dataclass(eq=False)
class _Tail:
    """A projector's batch whose changes, position and commit go on behind the next batch."""

    batch: Sequence[Message]
    handled: anyio.Event = field(default_factory=anyio.Event)  # the consumer may go on
    done: anyio.Event = field(default_factory=anyio.Event)
    behind: bool = False  # its handlers are done and its writing goes on behind
    ok: bool = False  # applied and committed
    error: Exception | None = None

    async def finished(self) -> None:
        """Wait until its task has ended (a set event's ``wait`` would still yield)."""
        if not self.done.is_set():
            await self.done.wait()


class EarlierBatchFailed(Exception):
    """The batch committing behind this one failed: this one wrote nothing, and is applied
    again once that one has been."""

    def __init__(self, tail: _Tail) -> None:
        super().__init__(
            f"the batch ending at global position {tail.batch[-1].global_position} failed "
            f"to commit: {tail.error!r}"
        )
        self.tail = tail


class Batches:
    """Applies one consumer's batches (see the module doc).

    Its transactions, parked messages and read-model tables come from outside (PostgreSQL in
    the worker, the in-memory stand-ins of ``worker.testing`` in tests), so the same code
    applies batches on both.
    """

    def __init__(
        self,
        name: str,
        *,
        routes: dict[str, Handlers],
        transactions: Transactions,
        store: MessageStore,
        positions: PositionStore,
        parked: ParkedMessages,
        lease: Lease,
        policy: RetryPolicy,
        cursor: Cursor,
        log: Any,
        tables: TableFactory = Table,
        concurrency: Concurrency | None = None,
        position_interval: float = 0.0,
        commit_behind: bool = False,
        declared: Declared | None = None,
    ) -> None:
        self.name = name
        self._declared = declared  # the read models its handlers may use (None: any)
        self._commit_behind = commit_behind  # a projector: full batches may commit behind
        self._tails: TaskGroup | None = None  # where they do (``committing_behind``)
        self._tail: _Tail | None = None  # the batch last left to commit behind
        self._position_interval = position_interval
        self._behind = False  # the batch is full and more follow: its position may wait
        self._concurrency = concurrency
        self.routes = routes
        self._transactions = transactions
        self._store = store
        self._parked = parked
        self._tables = tables
        self._positions = positions
        self._lease = lease
        self._policy = policy
        self.cursor = cursor
        self._log = log
        self._ready: dict[int, BaseEvent] = {}  # events validated ahead, by global position
        self._waits: anyio.Event | None = None  # set when the batch waits on the database

    async def process(self, batch: Sequence[Message], *, behind: bool = False) -> None:
        """Apply a batch exactly once; isolate and settle a failing message. ``behind``: the
        batch may commit behind the next one (see the module doc)."""
        attempt = 0
        while batch:
            try:
                await self.apply(batch, behind=behind)
                return
            except FlushFailed:
                for message in batch:  # one at a time, so the culprit is isolated
                    await self.process([message])
                return
            except HandlerFailed as failed:
                behind = False
                head, bad = batch[: failed.index], batch[failed.index]
                if head:
                    await self.process(head)
                await self._settle(bad, failed.error)
                batch, attempt = batch[failed.index + 1 :], 0
            except Exception as error:
                if not is_transient(error):
                    raise
                behind = False
                attempt += 1
                self.cursor.stats.transient_errors += 1
                delay = self._policy.backoff(attempt)
                self._log.warning(
                    "transient failure; retrying batch",
                    error=str(error),
                    attempt=attempt,
                    delay=round(delay, 3),
                )
                await anyio.sleep(delay)

    async def process_reading_ahead(
        self, batch: Sequence[Message], read: Callable[[int], Awaitable[list[Message]]]
    ) -> list[Message] | None:
        """Apply ``batch`` while the next one is read (``read(after)``) on another connection.

        The read overlaps the batch's handlers and commit; a failed read-ahead is dropped
        (``None``) and the caller reads again.
        """
        ahead: list[list[Message]] = []
        ready: dict[int, BaseEvent] = {}
        failure: Exception | None = None
        waits = self._waits = anyio.Event()
        handled = False

        async def read_ahead() -> None:
            with contextlib.suppress(Exception):
                ahead.append(await read(batch[-1].global_position))
            if ahead:
                await waits.wait()
                await self._validate_ahead(ahead[0], ready, lambda: handled)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_ahead)
            await anyio.lowlevel.checkpoint()  # the read is sent before the handlers start
            self._behind = True
            try:
                await self.process(batch, behind=self._commit_behind)
            except Exception as error:
                failure = error
                tg.cancel_scope.cancel()
            finally:
                self._behind, self._waits, handled = False, None, True
                waits.set()
        self._ready = ready if failure is None else {}
        if failure is not None:
            raise failure
        return ahead[0] if ahead else None

    async def _validate_ahead(
        self, batch: Sequence[Message], ready: dict[int, BaseEvent], handled: Callable[[], bool]
    ) -> None:
        """Validate the messages of ``batch`` into ``ready`` until ``handled()`` (the batch
        before it is done), a few at a time so that the batch's statements go on meanwhile."""
        routes = self.routes
        for start in range(0, len(batch), _VALIDATED_AT_ONCE):
            if handled():
                return
            for message in batch[start : start + _VALIDATED_AT_ONCE]:
                route = routes.get(message[2])
                if route is None or route.upcast is not None:
                    continue
                meta = message[6]
                if meta is not None and SCHEMA_VERSION in meta and not at_first_version(meta):
                    continue  # decoded in turn: its version is checked
                try:
                    ready[message[4]] = route.validate(message[5] or "{}")
                except Exception:  # it fails again in the handlers' turn
                    continue
            await anyio.lowlevel.checkpoint()

    async def apply(self, batch: Sequence[Message], *, behind: bool = False) -> None:
        """One transaction: every message's handlers, the read-model changes, the position.
        ``behind``: the changes, position and commit may go on behind the next batch."""
        routes = self.routes
        if not any(message[2] in routes for message in batch):
            await self.settle()
            await self._pass(batch)
            return
        if behind and self._tails is not None:
            await self._apply_behind(batch)
            return
        await self.settle()
        await self._transact(batch)

    async def _transact(
        self, batch: Sequence[Message], tail: _Tail | None = None, earlier: _Tail | None = None
    ) -> None:
        """``apply``'s transaction; with ``tail``, one that commits behind: it begins after
        ``earlier`` has committed, and once its handlers are done (and ``earlier`` committed)
        ``tail.handled`` lets the consumer go on while it writes."""
        committing = False
        wait_earlier = partial(_wait_for, earlier)
        try:
            after = None if tail is None else wait_earlier
            async with self._transactions.lazy(after=after) as conn:
                started = time.perf_counter()
                ctx = self.context(conn, batch[0])
                if self._concurrency is None:
                    parked = await self._handle_all(conn, ctx, batch)
                else:
                    parked = await self._handle_concurrently(conn, ctx, batch, self._concurrency)
                if tail is None:
                    if self._waits is not None:  # the next batch may be validated meanwhile
                        self._waits.set()
                else:
                    # (The next batch is not validated ahead meanwhile: its validation would
                    # hold up the batch committing behind, which is what holds this one up.)
                    await wait_earlier()
                    if ctx.touched() or begun(conn):  # something to write: behind the next
                        tail.behind = True
                        tail.handled.set()
                await self._flush(ctx, len(batch))
                handled = time.perf_counter()
                if not begun(conn):  # nothing to commit but the position: on its own, or later
                    committed = not self._may_wait()
                    if committed:
                        await self._commit_position(plain(conn), batch[-1].global_position)
                    self._committed(batch, started, handled, parked, committed=committed)
                    return
                await self._commit_position(conn, batch[-1].global_position)
                committing = True
        except Exception as error:
            if not committing or is_transient(error):
                raise
            # COMMIT itself refused the batch (a deferred constraint a handler's writes
            # broke): like a failed flush, which message did it is found one at a time.
            if len(batch) == 1:
                raise HandlerFailed(0, error) from error
            raise FlushFailed(str(error)) from error
        self._committed(batch, started, handled, parked)

    # -- committing behind -------------------------------------------------------------------

    async def committing_behind(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run the consumer's ``work``, its projector's batches free to commit behind (see the
        module doc). Should ``work`` fail, a batch still committing is cancelled: rolled back,
        or committed whole; either way its position says which."""
        if not self._commit_behind:
            await work()
            return
        failure: Exception | None = None
        async with anyio.create_task_group() as tails:
            self._tails = tails
            try:
                await work()
                await self.settle()
            except Exception as error:
                failure = error
                tails.cancel_scope.cancel()
            finally:
                self._tails, self._tail = None, None
        if failure is not None:
            raise failure

    async def settle(self) -> None:
        """Wait for the batch committing behind, if any; if it failed, apply it again the usual
        way (before anything else is read or written)."""
        tail = self._tail
        if tail is None:
            return
        await tail.finished()
        self._tail = None
        if tail.error is not None:
            await self._again(tail)

    async def _again(self, tail: _Tail) -> None:
        """Apply again a batch whose commit behind failed. (A batch goes behind only once the
        one before it has committed, so its failure is its own.)"""
        error = tail.error
        assert error is not None
        if not isinstance(error, FlushFailed | HandlerFailed) and not is_transient(error):
            raise error  # not the batch's doing (the lease, the position): as if it were ours
        self._log.warning(
            "batch committing behind failed; applying it again",
            error=str(error),
            messages=len(tail.batch),
            position=tail.batch[-1].global_position,
        )
        await self.process(tail.batch)

    async def _apply_behind(self, batch: Sequence[Message]) -> None:
        """Handle ``batch`` in a task of its own that then writes it behind (returns once the
        handlers are done and the batch before it is committed); a batch that failed before
        that is the caller's, as ``apply``'s."""
        assert self._tails is not None
        tail, earlier = _Tail(batch), self._tail
        self._tails.start_soon(self._run_behind, tail, earlier)
        await tail.handled.wait()
        if tail.behind:
            self._tail = tail
            return
        if isinstance(tail.error, EarlierBatchFailed):  # this one wrote nothing: both again
            await self.settle()
            await self.apply(batch)
            return
        if tail.error is not None:
            raise tail.error
        if not tail.ok:  # its task ended otherwise (cancelled): the task group says how
            await anyio.lowlevel.checkpoint()
            raise RuntimeError(f"the batch ending at {batch[-1].global_position} was not applied")
        self._tail = None  # done whole (it wrote nothing but its position)

    def _committing(self) -> bool:
        """Whether the batch before is still committing behind this one."""
        return self._tail is not None and not self._tail.done.is_set()

    async def _run_behind(self, tail: _Tail, earlier: _Tail | None) -> None:
        try:
            await self._transact(tail.batch, tail, earlier)
            tail.ok = True
        except Exception as error:
            tail.error = error
            if not tail.behind and earlier is not None and earlier.error is not None:
                # Whatever a handler made of the failure it met (wrapped, or its own after
                # swallowing it), this batch failed because the one before did.
                tail.error = EarlierBatchFailed(earlier)
        finally:
            tail.done.set()
            tail.handled.set()

    async def _pass(self, batch: Sequence[Message]) -> None:
        """A batch no handler takes: only the position moves."""
        started = time.perf_counter()
        committed = not self._may_wait()
        if committed:  # one statement of its own: the compare-and-set needs no BEGIN/COMMIT
            async with self._transactions.statement() as conn:
                await self._commit_position(conn, batch[-1].global_position)
        self._committed(batch, started, started, 0, committed=committed)

    def _may_wait(self) -> bool:
        """Whether a batch that wrote nothing may leave its position for later (see the
        module's doc)."""
        return (
            self._behind and time.monotonic() - self.cursor.committed_at < self._position_interval
        )

    async def _commit_position(self, conn: Connection, position: int) -> None:
        """Move the committed position to ``position`` on ``conn`` (a compare-and-set with the
        position last committed and the lease's epoch), unless the lease could have run out."""
        self.check_lease()
        await self._positions.commit(
            conn, self.name, position, self._lease.epoch, expected=self.cursor.committed
        )

    async def commit_position(self) -> None:
        """Commit the position of batches that left it for later, if any (before the consumer
        waits, pauses, stops or reports it)."""
        await self.settle()
        cursor = self.cursor
        if cursor.position == cursor.committed:
            return
        async with self._transactions.statement() as conn:
            await self._commit_position(conn, cursor.position)
        cursor.committed, cursor.committed_at = cursor.position, time.monotonic()

    def _committed(
        self,
        batch: Sequence[Message],
        started: float,
        handled: float,
        behind: int,
        *,
        committed: bool = True,
    ) -> None:
        """The cursor after ``batch`` (``behind``: messages parked behind others; ``committed``:
        its position too, not left for later)."""
        cursor = self.cursor
        cursor.stats.batch(started, handled, time.perf_counter(), batch[0].time.timestamp())
        cursor.position = batch[-1].global_position
        if committed:
            cursor.committed, cursor.committed_at = cursor.position, time.monotonic()
        cursor.processed += len(batch)
        cursor.parked_count += behind
        self._log.debug("batch handled", messages=len(batch), position=cursor.position)

    async def _handle_all(self, conn: Connection, ctx: Context, batch: Sequence[Message]) -> int:
        """Every message's handlers; returns how many were parked behind a parked stream."""
        token = current_context.set(ctx)  # logs made by handlers name the message
        handed = handed_to.set(ctx.unawaited)  # what its table hands out is checked too
        routes, parked, ready = self.routes, self.cursor.parked, self._ready
        # While the batch before commits behind, the loop lets it go on every so often.
        yielding = self._committing()
        behind = 0
        try:
            for index, message in enumerate(batch):
                if yielding and not index & _YIELD_EVERY:
                    await anyio.lowlevel.checkpoint()
                # The hot loop: rows are indexed directly (2: type, 1: stream, 5: data).
                route = routes.get(message[2])
                if route is None:
                    continue
                if parked and message[1] in parked:
                    await self._parked.park(conn, self.name, message, None)
                    behind += 1
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
                            and (
                                meta is None or SCHEMA_VERSION not in meta or at_first_version(meta)
                            )
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
                except ValidationError as error:
                    raise HandlerFailed(index, malformed(message, error)) from None
                except EarlierBatchFailed:
                    raise
                except Exception as error:
                    if is_transient(error):
                        raise
                    raise HandlerFailed(index, error) from error
        finally:
            current_context.reset(token)
            handed_to.reset(handed)
            ctx.drop_unawaited()  # a failed handler's writes: they never run
        return behind

    async def _handle_concurrently(
        self, conn: Connection, ctx: Context, batch: Sequence[Message], concurrency: Concurrency
    ) -> int:
        """``_handle_all`` for ``concurrency=n``: the batch's partitions handled up to n at once,
        each in order (see ``worker.engine.partitions``); the first failure stops them all."""
        routes, parked = self.routes, self.cursor.parked
        handled: list[int] = []
        behind = 0
        for index, message in enumerate(batch):
            if message[2] not in routes:
                continue
            if parked and message[1] in parked:
                await self._parked.park(conn, self.name, message, None)
                behind += 1
                continue
            handled.append(index)
        shared = cast("Connection", SerialConnection(conn))
        stats, ready = self.cursor.stats, self._ready

        yielding = self._committing()

        async def handle(group: list[int]) -> None:
            view = ctx.partition(shared)
            current_context.set(view)  # this task's own: its logs name its message
            handed_to.set(view.unawaited)
            stats.in_flight += 1
            try:
                for n, index in enumerate(group):
                    if yielding and not n & _YIELD_EVERY:  # (as in ``_handle_all``)
                        await anyio.lowlevel.checkpoint()
                    message = batch[index]
                    event = ready.pop(message[4], None) if ready else None
                    await _handle_one(routes[message[2]], message, index, view, event)
            finally:
                stats.in_flight -= 1
                view.drop_unawaited()

        try:
            groups = partitions(batch, handled, concurrency.partition_by)
        except PartitionKeyError as failed:  # that message fails, as if its handler had
            raise HandlerFailed(failed.index, failed.error) from failed.error
        await run_partitions(groups, concurrency.limit, handle)
        return behind

    @staticmethod
    async def _flush(ctx: Context, size: int) -> None:
        try:
            await ctx.flush()
        except Exception as error:
            if is_transient(error):
                raise
            if size == 1:
                raise HandlerFailed(0, error) from error
            raise FlushFailed(str(error)) from error

    def check_lease(self) -> None:
        """Refuse to commit once the lease could have run out (self-fencing): the epoch check in
        the commit catches a takeover; this catches a holder that merely could not renew."""
        if not self._lease.held:
            raise LeaseLostError(self._lease.lost or f"consumer {self.name}: lease not held")

    def context(self, conn: Connection, first: Message) -> Context:
        """A batch's context; exact (replay-safe) when the batch repeats applied messages."""
        return Context(
            self.name,
            conn,
            self._store,
            generation=self.cursor.generation,
            exact=first.global_position <= self.cursor.high_water,
            tables=self._tables,
            declared=self._declared,
        )

    async def _settle(self, message: Message, error: BaseException) -> None:
        """Retry one failing message on its own, then park it or stop the consumer."""
        first_failed = datetime.now(UTC)
        attempt = 1
        bound = self._log.bind(
            stream_name=message.stream_name,
            position=message.position,
            global_position=message.global_position,
            type=message.type,
        )
        await self._check_fenced(bound, error, confirm=True)
        self.cursor.stats.handler_failures += 1
        while isinstance(decision := self._policy.decide(error, attempt), RetryAfter):
            await self._check_fenced(bound, error)
            bound.warning(
                "handler failed; retrying",
                error=repr(error),
                attempt=attempt,
                delay=round(decision.delay, 3),
            )
            await anyio.sleep(decision.delay)
            try:
                await self.apply([message])
                return
            except HandlerFailed as failed:
                error, attempt = failed.error, attempt + 1
                self.cursor.stats.handler_failures += 1
        await self._check_fenced(bound, error, confirm=True)
        if isinstance(decision, Park):
            await self._park(message, dead_letters.Failure(error, attempt, first_failed))
            bound.error("message parked", error=repr(error), attempts=attempt)
            return
        assert isinstance(decision, Stop)
        await self.settle()  # the batch committing behind, if any, is applied before the stop
        bound.error(
            "consumer stopped: handler keeps failing and the failure action is 'stop'",
            error=repr(error),
            attempts=attempt,
        )
        raise ConsumerStoppedError(f"consumer {self.name} stopped at {message.global_position}")

    async def _check_fenced(self, log: Any, error: BaseException, *, confirm: bool = False) -> None:
        """A failure met once the lease is lost is the fence's doing, not the handler's (a
        newer holder wrote the message first: a duplicate key): the batch rolls back, and
        nothing is retried, parked or stopped here. ``confirm``: also ask the database whether
        the lease's epoch is still current (a takeover the renewals have not met yet)."""
        lease = self._lease
        if lease.held:
            current = await self._positions.lease_epoch(self.name) if confirm else None
            if current is None or current == lease.epoch:
                return
            reason = (
                f"consumer {self.name} was taken over (epoch {lease.epoch} is no longer current)"
            )
        else:
            reason = lease.lost or f"consumer {self.name}: lease not held"
        log.warning("lease lost; batch rolled back", error=repr(error), reason=reason)
        raise LeaseLostError(reason) from error

    async def _park(self, message: Message, failure: dead_letters.Failure) -> None:
        await self.settle()
        cursor = self.cursor
        async with self._transactions.transaction() as conn:
            await self._parked.park(conn, self.name, message, failure)
            await self._commit_position(conn, message.global_position)
        cursor.parked.setdefault(message.stream_name, False)
        cursor.position = cursor.committed = message.global_position
        cursor.committed_at = time.monotonic()
        cursor.processed += 1
        cursor.parked_count += 1


async def _handle_one(
    route: Handlers, message: Message, index: int, ctx: Context, event: BaseEvent | None
) -> None:
    """Decode (unless validated ahead: ``event``) and handle one message (the hot loop of
    ``_handle_all``, for one message)."""
    try:
        if event is None:
            event = route.decode(message)
        ctx.message = message
        await route.call_all(event, ctx)
    except ValidationError as error:
        raise HandlerFailed(index, malformed(message, error)) from None
    except EarlierBatchFailed:
        raise
    except Exception as error:
        if is_transient(error):
            raise
        raise HandlerFailed(index, error) from error


async def _wait_for(earlier: _Tail | None) -> None:
    """Wait for the batch committing behind; raise ``EarlierBatchFailed`` if it failed."""
    if earlier is not None:
        await earlier.finished()
        if earlier.error is not None:
            raise EarlierBatchFailed(earlier)
