"""A consumer: one subscriber reading one category, from its position, in batches.

Each batch is applied in one transaction together with the new position (exactly once into
PostgreSQL read models). When a handler fails, the transaction is rolled back; the messages
before the failing one are applied again as a batch, the failing one is retried on its own and,
if it keeps failing, parked (or the consumer stops), and the rest continue as a batch.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import anyio
import structlog
from pydantic import ValidationError

from worker.engine import dead_letters
from worker.engine import queries as q
from worker.engine.context import Context, current_context
from worker.engine.lease import DEFAULT_TTL, Lease
from worker.engine.retry import Park, RetryAfter, RetryPolicy, Stop, is_transient
from worker.engine.subscriber import Slot
from worker.errors import (
    ConsumerStoppedError,
    LeaseLostError,
    MalformedMessageError,
    PositionMovedError,
    ReplayFailedError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import asyncpg

    from worker.engine.positions import PositionStore
    from worker.engine.subscriber import Subscriber
    from worker.engine.wakeups import Waker
    from worker.model.event import BaseEvent
    from worker.store.message import Message
    from worker.store.message_store import MessageStore
    from worker.store.types import Connection

log = structlog.get_logger("worker.consumer")

State = Literal[
    "starting", "waiting", "running", "rebuilding", "caught_up", "ahead", "stopped", "done"
]


@dataclass(frozen=True)
class ConsumerOptions:
    """Tuning of one consumer."""

    batch_size: int = 1000
    poll_min: float = 0.01
    poll_max: float = 1.0
    refresh_interval: float = 1.0
    lease_ttl: float = DEFAULT_TTL
    policy: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True, slots=True)
class _Route:
    """What to do with one message type: validate its JSON, then call the handlers."""

    event_class: type[BaseEvent]
    calls: tuple[tuple[Callable[..., Any], bool], ...]
    validate: Callable[[str], BaseEvent]
    single: Callable[..., Any] | None  # the one handler, when it is async
    single_sync: Callable[..., Any] | None  # the one handler, when it is a plain function


def _route(
    event_class: type[BaseEvent], calls: tuple[tuple[Callable[..., Any], bool], ...]
) -> _Route:
    one = calls[0] if len(calls) == 1 else None
    validator = event_class.__pydantic_validator__
    return _Route(
        event_class,
        calls,
        validator.validate_json,
        one[0] if one is not None and one[1] else None,
        one[0] if one is not None and not one[1] else None,
    )


def malformed(message: Message, error: ValidationError) -> MalformedMessageError:
    """A message whose data does not validate against its event class."""
    detail = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '<data>'}: {e['msg']}" for e in error.errors()
    )
    return MalformedMessageError(message.stream_name, message.position, message.type, detail)


class HandlerFailed(Exception):
    """The message at ``index`` of a batch raised ``error`` in a handler."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class FlushFailed(Exception):
    """Writing a batch's read-model changes failed; which message caused it is unknown."""


class Consumer:
    """Runs one (subscriber, category) pair; its name keys its position and lease."""

    def __init__(
        self,
        subscriber: Subscriber,
        category: str,
        *,
        dsn: str,
        pool: asyncpg.Pool[Any],
        store: MessageStore,
        positions: PositionStore,
        waker: Waker,
        options: ConsumerOptions,
        generation: int | None = None,
        member: int | None = None,
    ) -> None:
        self.subscriber = subscriber
        self.category = category
        self.slot = Slot(subscriber, category, member)
        self.name = self.slot.name
        if generation is not None:
            self.name = f"{self.name}#g{generation}"
        self._fixed_generation = generation
        self.generation = generation or 1
        self.high_water = 0
        self.refill_to: int | None = None  # set while an in-place rebuild refills the tables
        self.head: int | None = None  # the category head, when the position is beyond it
        self._pool = pool
        self._store = store
        self._positions = positions
        self._waker = waker
        self.options = options
        self.lease = Lease(dsn, self.name, ttl=options.lease_ttl)
        self.instance = subscriber.cls()
        self._routes = self._build_routes()
        self.state: State = "starting"
        self.position = 0
        self.processed = 0
        self.parked_count = 0
        self.parked: dict[str, bool] = {}
        self._refreshed_at = 0.0
        self._token = False
        self._log = log.bind(consumer=self.name)

    def _build_routes(self) -> dict[str, _Route]:
        by_class: dict[type[BaseEvent], list[tuple[Callable[..., Any], bool]]] = {}
        for route in self.subscriber.routes:
            method = getattr(self.instance, route.method_name)
            by_class.setdefault(route.event_class, []).append((method, route.is_async))
        table: dict[str, _Route] = {}
        for cls, calls in by_class.items():
            for type_name in (cls.type_name(), *cls.__aliases__):
                table[type_name] = _route(cls, tuple(calls))
        return table

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(
        self,
        stop: anyio.Event,
        *,
        until_caught_up: bool = False,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        """Hold the lease and consume until ``stop`` (or caught up, or the consumer stops).

        ``limiter`` caps how many slots of a consumer group this process holds at once: a slot
        only tries its lease while it can take a token, and gives the token back with the lease.
        """
        failures = 0
        while not stop.is_set():
            self.state = "waiting"
            try:
                if not await self._acquire(stop, limiter):
                    break
                failures = 0
                await self.lease.hold(partial(self._consume, stop, until_caught_up))
                break
            except PositionMovedError as error:
                self._log.warning("position moved; starting again from it", error=str(error))
            except LeaseLostError as error:
                self._log.warning("lease lost; waiting to take it back", error=str(error))
            except ConsumerStoppedError:
                self.state = "stopped"
                with contextlib.suppress(Exception):
                    await self.lease.report("stopped")
                return
            except Exception as error:
                if not is_transient(error):
                    raise
                failures += 1
                delay = self.options.policy.backoff(failures)
                self._log.warning(
                    "connection trouble; retrying", error=str(error), delay=round(delay, 3)
                )
                with anyio.move_on_after(delay):
                    await stop.wait()
            finally:
                await self.lease.release()
                if limiter is not None and self._token:
                    self._token = False
                    limiter.release()
        if self.state != "stopped":
            self.state = "done"

    async def _acquire(self, stop: anyio.Event, limiter: anyio.CapacityLimiter | None) -> bool:
        """Take the lease (within the limiter's share, if any); False once stopped."""
        if limiter is None:
            return await self.lease.acquire(stop)
        waited = False
        while not stop.is_set():
            await limiter.acquire()
            if await self.lease.try_acquire(keep_connection=True):
                self._token = True
                return True
            limiter.release()
            if not waited:
                self._log.info("waiting for consumer held by another process")
                waited = True
            with anyio.move_on_after(self.lease.retry_interval):
                await stop.wait()
        return False

    async def _consume(self, stop: anyio.Event, until_caught_up: bool) -> None:
        await self._start()
        idle = self.options.poll_min
        ahead: list[Message] | None = None
        while not stop.is_set():
            self._check_lease()
            await self._refresh()
            mark = self._waker.mark(self.category)
            batch = ahead if ahead is not None else await self._read(self.position)
            ahead = None
            if batch:
                idle = self.options.poll_min
                self.head = None
                if len(batch) == self.options.batch_size:
                    ahead = await self._process_reading_ahead(batch)
                    continue
                await self._process(batch)
            await self._caught_up()
            if until_caught_up:
                return
            if await self._waker.wait(self.category, seconds=idle, since=mark):
                idle = self.options.poll_min
                if self._waker.recheck_requested(self.name):
                    await self._recheck()
            else:
                idle = min(idle * 2, self.options.poll_max)
            self.state = "ahead" if self.head is not None else "running"

    async def _start(self) -> None:
        """Load the position (and what an operator set beside it) under a fresh lease."""
        if self._fixed_generation is None:
            await self._seed_position()
        self.position = await self._positions.load(self.name)
        self.high_water = await self._positions.high_water(self.name)
        self.refill_to = await self._pool.fetchval(q.LOAD_REFILL, self.name)
        if self._fixed_generation is None and self.subscriber.read_models:
            self.generation = (
                await self._pool.fetchval(q.LIVE_GENERATION, self.subscriber.name) or 1
            )
        await self._refresh(force=True)
        await self._check_head()
        self.state = "rebuilding" if self.refill_to is not None else "running"
        await self.lease.report(self.state)
        self._log.info(
            "consumer started",
            category=self.category,
            position=self.position,
            epoch=self.lease.epoch,
            rebuilding=self.refill_to is not None,
        )

    async def _check_head(self) -> None:
        """A position beyond the category head (set by an operator) would skip every message
        written until the store catches up with it: report it as an error state."""
        head = await self._store.category_head(self.category) or 0
        if self.position <= head:
            self.head = None
            return
        if self.head is None:
            self._log.error(
                "position is beyond the category head: messages up to it will never be handled; "
                "reset the consumer",
                position=self.position,
                head=head,
            )
        self.head = head

    async def _caught_up(self) -> None:
        """Every message up to the head is handled: end a refill, or say the state."""
        if self.refill_to is not None:
            await self._pool.execute(q.END_REFILL, self.name)
            self._log.info("rebuild in place caught up", position=self.position)
            self.refill_to = None
            await self.lease.report("running")
        if self.head is not None:
            await self._check_head()
        self.state = "ahead" if self.head is not None else "caught_up"

    async def _recheck(self) -> None:
        """Told on the control channel that a command changed this consumer: confirm the lease
        (a fenced one raises ``LeaseLostError``) and the position."""
        await self.lease.renew()
        committed = await self._positions.load(self.name)
        if committed != self.position:
            raise PositionMovedError(
                f"consumer {self.name} was moved from {self.position} to {committed}"
            )

    async def _seed_position(self) -> None:
        """A slot seen for the first time after its group was resized starts where every
        former slot of the same category had got to (and replays safely up to the furthest)."""
        base = self.subscriber.consumer_name(self.category)
        current = "" if self.slot.size is None else f"/{self.slot.size}"
        seeded = await self._pool.fetchval(q.SEED_POSITION, self.name, base, current)
        if seeded is not None:
            self._log.info("position seeded from the former group slots", position=seeded)

    async def _read(self, after: int) -> list[Message]:
        return await self._store.read_category(
            self.category,
            after + 1,
            self.options.batch_size,
            consumer_group_member=self.slot.member,
            consumer_group_size=self.slot.size,
        )

    async def _process_reading_ahead(self, batch: Sequence[Message]) -> list[Message] | None:
        """Apply ``batch`` while the next one is read on another connection.

        The read overlaps the batch's handlers and commit; a failed read-ahead is dropped
        (``None``) and the next iteration reads again.
        """
        ahead: list[list[Message]] = []
        failure: Exception | None = None

        async def read_ahead() -> None:
            with contextlib.suppress(Exception):
                ahead.append(await self._read(batch[-1].global_position))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_ahead)
            try:
                await self._process(batch)
            except Exception as error:
                failure = error
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return ahead[0] if ahead else None

    # -- batches -----------------------------------------------------------------------------

    async def _process(self, batch: Sequence[Message]) -> None:
        """Apply a batch exactly once; isolate and settle a failing message."""
        attempt = 0
        while batch:
            try:
                await self._apply(batch)
                return
            except FlushFailed:
                for message in batch:  # one at a time, so the culprit is isolated
                    await self._process([message])
                return
            except HandlerFailed as failed:
                head, bad, rest = (
                    batch[: failed.index],
                    batch[failed.index],
                    batch[failed.index + 1 :],
                )
                if head:
                    await self._process(head)
                await self._settle(bad, failed.error)
                batch, attempt = rest, 0
            except Exception as error:
                if not is_transient(error):
                    raise
                attempt += 1
                delay = self.options.policy.backoff(attempt)
                self._log.warning(
                    "transient failure; retrying batch",
                    error=str(error),
                    attempt=attempt,
                    delay=round(delay, 3),
                )
                await anyio.sleep(delay)

    async def _apply(self, batch: Sequence[Message]) -> None:
        """One transaction: every message's handlers, then the new position."""
        async with self._pool.acquire() as conn, conn.transaction():
            ctx = self._context(conn, batch[0])
            token = current_context.set(ctx)  # logs made by handlers name the message
            routes, parked = self._routes, self.parked
            behind = 0  # messages parked behind a parked message of their stream
            try:
                for index, message in enumerate(batch):
                    # The hot loop: rows are indexed directly (2: type, 1: stream, 5: data).
                    route = routes.get(message[2])
                    if route is None:
                        continue
                    if parked and message[1] in parked:
                        await dead_letters.park(conn, self.name, message, None)
                        behind += 1
                        continue
                    try:
                        event = route.validate(message[5] or "{}")
                        ctx.message = message
                        if route.single is not None:
                            await route.single(event, ctx)
                        elif route.single_sync is not None:
                            route.single_sync(event, ctx)
                        else:
                            await self._call_all(route, event, ctx)
                    except ValidationError as error:
                        raise HandlerFailed(index, malformed(message, error)) from None
                    except Exception as error:
                        if is_transient(error):
                            raise
                        raise HandlerFailed(index, error) from error
            finally:
                current_context.reset(token)
            try:
                await ctx.flush()
            except Exception as error:
                if is_transient(error):
                    raise
                if len(batch) == 1:
                    raise HandlerFailed(0, error) from error
                raise FlushFailed(str(error)) from error
            last = batch[-1].global_position
            self._check_lease()
            await self._positions.commit(
                conn, self.name, last, self.lease.epoch, expected=self.position
            )
        self.position = last
        self.processed += len(batch)
        self.parked_count += behind
        self._log.debug("batch applied", messages=len(batch), position=last)

    def _check_lease(self) -> None:
        """Refuse to commit once the lease could have run out (self-fencing): the epoch check in
        the commit catches a takeover; this catches a holder that merely could not renew."""
        if not self.lease.held:
            raise LeaseLostError(self.lease.lost or f"consumer {self.name}: lease not held")

    def _context(self, conn: Connection, first: Message) -> Context:
        """A batch's context; exact (replay-safe) when the batch repeats applied messages."""
        return Context(
            self.name,
            conn,
            self._store,
            generation=self.generation,
            exact=first.global_position <= self.high_water,
        )

    @staticmethod
    async def _call_all(route: _Route, event: BaseEvent, ctx: Context) -> None:
        for call, is_async in route.calls:
            if is_async:
                await call(event, ctx)
            else:
                call(event, ctx)

    async def _dispatch(self, route: _Route, message: Message, ctx: Context) -> None:
        """Decode and handle one message (the slow paths: replays)."""
        try:
            event = route.validate(message.data_json)
        except ValidationError as error:
            raise malformed(message, error) from None
        ctx.message = message
        await self._call_all(route, event, ctx)

    # -- failures ----------------------------------------------------------------------------

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
        while True:
            decision = self.options.policy.decide(error, attempt)
            if isinstance(decision, RetryAfter):
                bound.warning(
                    "handler failed; retrying",
                    error=repr(error),
                    attempt=attempt,
                    delay=round(decision.delay, 3),
                )
                await anyio.sleep(decision.delay)
                try:
                    await self._apply([message])
                    return
                except HandlerFailed as failed:
                    error, attempt = failed.error, attempt + 1
                continue
            failure = dead_letters.Failure(error, attempt, first_failed)
            if isinstance(decision, Park):
                await self._park(message, failure)
                bound.error("message parked", error=repr(error), attempts=attempt)
                return
            assert isinstance(decision, Stop)
            bound.error(
                "consumer stopped: handler keeps failing and the failure action is 'stop'",
                error=repr(error),
                attempts=attempt,
            )
            raise ConsumerStoppedError(f"consumer {self.name} stopped at {message.global_position}")

    async def _park(self, message: Message, failure: dead_letters.Failure) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await dead_letters.park(conn, self.name, message, failure)
            self._check_lease()
            await self._positions.commit(
                conn, self.name, message.global_position, self.lease.epoch, expected=self.position
            )
        self.parked.setdefault(message.stream_name, False)
        self.position = message.global_position
        self.processed += 1
        self.parked_count += 1

    # -- parked streams and replays ----------------------------------------------------------

    async def _refresh(self, *, force: bool = False) -> None:
        """Reload parked streams now and then; run any replay that was requested."""
        now = time.monotonic()
        if not force and now - self._refreshed_at < self.options.refresh_interval:
            return
        self._refreshed_at = now
        self.parked = await dead_letters.parked_streams(self._pool, self.name)
        for stream, requested in list(self.parked.items()):
            if not requested:
                continue
            try:
                await self.replay(stream)
            except ReplayFailedError as failed:  # the request is withdrawn: logged once
                self._log.error(
                    "replay failed; stream stays parked",
                    stream_name=stream,
                    position=failed.position,
                    replayed=failed.replayed,
                    error=failed.error,
                )

    async def replay(self, stream_name: str) -> int:
        """Re-dispatch a stream's parked messages in order; return how many were handled.

        Runs under this consumer's lease. Each message is applied in its own transaction that
        also removes it from the dead letters. A message that fails again stays parked (with
        those after it) with its new error, the stream's replay request is withdrawn, and
        ``ReplayFailedError`` says where and why.
        """
        done = 0
        for dead_letter_id, global_position in await dead_letters.parked_of_stream(
            self._pool, self.name, stream_name
        ):
            row = await self._store.message_at(global_position)
            try:
                await self._replay_one(dead_letter_id, row)
            except HandlerFailed as failed:
                async with self._pool.acquire() as conn, conn.transaction():
                    await dead_letters.failed_again(conn, dead_letter_id, failed.error, 1)
                    if not await self.lease_current(conn):
                        raise LeaseLostError(
                            f"consumer {self.name} lost its lease during a replay"
                        ) from None
                error = dead_letters.describe(type(failed.error).__qualname__, str(failed.error))
                position = global_position if row is None else row.position
                self.parked[stream_name] = False
                raise ReplayFailedError(
                    self.name, stream_name, position, error, done
                ) from failed.error
            done += 1
        self.parked.pop(stream_name, None)
        self._log.info("parked stream replayed", stream_name=stream_name, messages=done)
        return done

    async def _replay_one(self, dead_letter_id: int, message: Message | None) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            if message is not None and (route := self._routes.get(message.type)) is not None:
                ctx = self._context(conn, message)
                try:
                    await self._dispatch(route, message, ctx)
                    await ctx.flush()
                except Exception as error:
                    if is_transient(error):
                        raise
                    raise HandlerFailed(0, error) from error
            await conn.execute(q.DELETE_DEAD_LETTER, dead_letter_id)
            if not await self.lease_current(conn):
                raise LeaseLostError(f"consumer {self.name} lost its lease during a replay")

    async def lease_current(self, conn: Connection) -> bool:
        """True while this process's lease epoch is the current one (checked in ``conn``)."""
        epoch = await conn.fetchval(
            "SELECT epoch FROM worker.leases WHERE consumer = $1 FOR SHARE", self.name
        )
        return bool(epoch == self.lease.epoch)
