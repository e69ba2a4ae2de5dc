"""A consumer: one subscriber reading one category, from its position, in batches.

Its lifecycle: wait for the lease, load the position, then read batches and hand them to
``Batches`` (applied exactly once, failures isolated) until stopped, caught up or halted;
between batches it runs requested replays of parked streams (``Replays``) and sleeps until
woken or its poll interval has passed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker.engine import pauses, standby
from worker.engine import queries as q
from worker.engine.batch import Batches
from worker.engine.cursor import Cursor
from worker.engine.dead_letters import PostgresParkedMessages
from worker.engine.fencing import check_held
from worker.engine.lease import DEFAULT_TTL, Lease
from worker.engine.positions import seed_from_former_slots
from worker.engine.replays import Replays
from worker.engine.retry import RetryPolicy, is_disconnection, is_transient
from worker.engine.routes import route_table
from worker.engine.state import ConsumerState
from worker.engine.subscriber import Slot
from worker.errors import ConsumerStoppedError, LeaseLostError, PositionMovedError
from worker.read import generations
from worker.store import backoff
from worker.store.transactions import PoolTransactions

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable

    import asyncpg

    from worker.engine.positions import PositionStore
    from worker.engine.stats import ConsumerStats
    from worker.engine.subscriber import Subscriber
    from worker.engine.wakeups import Waker
    from worker.store.message import Message
    from worker.store.message_store import MessageStore

log = structlog.get_logger("worker.consumer")

_ENDED = frozenset({ConsumerState.STOPPED, ConsumerState.DONE})


@dataclass(frozen=True)
class ConsumerOptions:
    """Tuning of one consumer."""

    batch_size: int = 1000
    poll_min: float = 0.01
    poll_max: float = 1.0
    refresh_interval: float = 1.0
    lease_ttl: float = DEFAULT_TTL
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    position_interval: float = 1.0  # see ``Batches``: how long a position may wait


async def close_all(
    consumers: Iterable[Consumer], *others: Callable[[], Coroutine[Any, Any, Any]]
) -> None:
    """Close what the consumers' runs left open, and ``others`` (a pool's ``close``), side by
    side; shielded, and given up after five seconds."""
    with anyio.move_on_after(5, shield=True):
        async with anyio.create_task_group() as tg:
            for closing in (*others, *(consumer.close for consumer in consumers)):
                tg.start_soon(closing)


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
        pausable: bool = True,
    ) -> None:
        self.subscriber = subscriber
        self.category = category
        self.slot = Slot(subscriber, category, member)
        self.consumer_name = (
            self.slot.consumer if generation is None else self.slot.consumer.building(generation)
        )
        self.name = str(self.consumer_name)
        self._fixed_generation = generation
        self.cursor = Cursor(generation=generation or 1)
        self.refill_to: int | None = None  # set while an in-place rebuild refills the tables
        self.head: int | None = None  # the category head, when the position is beyond it
        self._head_checked = False  # whether the position is known not to be beyond the head
        self.pausable = pausable and generation is None  # rebuilds replay regardless
        self.paused = False  # an operator paused it (`worker pause`)
        self._pause = pauses.Switch(pool, self.name, options.refresh_interval)
        self._pool = pool
        self._store = store
        self._positions = positions
        self._waker = waker
        self.options = options
        self.lease = Lease(dsn, self.name, ttl=options.lease_ttl)
        self.instance = subscriber.cls()
        self.state = ConsumerState.STARTING
        self.fresh_at: float | None = None  # see ``lag_seconds``
        self._log = log.bind(consumer=self.name)
        self.batches = Batches(
            self.name,
            routes=route_table(subscriber, self.instance),
            transactions=PoolTransactions(pool),
            store=store,
            positions=positions,
            parked=PostgresParkedMessages(pool),
            lease=self.lease,
            policy=options.policy,
            cursor=self.cursor,
            log=self._log,
            concurrency=subscriber.concurrent,
            position_interval=options.position_interval,
            commit_behind=bool(subscriber.read_models),
            declared=subscriber.declared,
        )
        self.replays = Replays(
            self.batches,
            pool=pool,
            store=store,
            lease=self.lease,
            refresh_interval=options.refresh_interval,
            log=self._log,
        )

    @property
    def state(self) -> ConsumerState:
        """Where it is in its life; ``disconnected`` while it cannot reach the database
        (unless it has halted or returned)."""
        if self.lease.contact.up or self._state in _ENDED:
            return self._state
        return ConsumerState.DISCONNECTED

    @state.setter
    def state(self, state: ConsumerState) -> None:
        self._state = state

    def lag_seconds(self, now: float | None = None) -> float | None:
        """How far behind the present its handling may be: ``now`` (wall clock) minus the time
        of the oldest message it had yet to handle at its last read, or of that read when it
        found nothing new. It keeps growing while the consumer cannot read (the database is
        out of reach, it is paused or halted); ``None`` before its first read."""
        if self.fresh_at is None:
            return None
        return max((time.time() if now is None else now) - self.fresh_at, 0.0)

    @property
    def position(self) -> int:
        """The global position last handled (committed, or within ``position_interval``)."""
        return self.cursor.position

    @property
    def committed(self) -> int:
        """The global position last committed."""
        return self.cursor.committed

    @property
    def processed(self) -> int:
        """Messages this process handled (or parked)."""
        return self.cursor.processed

    @property
    def stats(self) -> ConsumerStats:
        """What it measured about its batches (for the metrics)."""
        return self.cursor.stats

    @property
    def parked_count(self) -> int:
        """Messages this process parked."""
        return self.cursor.parked_count

    async def close(self) -> None:
        """Close what ``run`` left open (the lease's connection), giving the lease up."""
        await self.lease.close()

    async def replay(self, stream_name: str) -> int:
        """Re-dispatch a stream's parked messages in order (under this consumer's lease)."""
        return await self.replays.replay(stream_name)

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(
        self,
        stop: anyio.Event,
        *,
        until_caught_up: bool = False,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        """Hold the lease and consume until ``stop`` (or caught up, or the consumer stops);
        ``limiter`` caps the consumer-group slots this process holds (see ``Lease.acquire``).

        The lease is given up at the end, its connection left open for ``close`` (the runner
        closes every consumer's together with the pool)."""
        failures = 0
        while not stop.is_set():
            self.state = ConsumerState.WAITING
            try:
                if not await self._acquire(stop, until_caught_up, limiter):
                    break
                failures = 0
                consume = partial(self._consume, stop, until_caught_up)
                if (pipeline := self.batches.pipeline) is not None:
                    consume = partial(pipeline.running, consume)
                await self.lease.hold(consume)
                break
            except PositionMovedError as error:
                self._log.warning("position moved; starting again from it", error=str(error))
            except LeaseLostError as error:
                self._log.warning("lease lost; waiting to take it back", error=str(error))
            except ConsumerStoppedError:
                self.state = ConsumerState.STOPPED
                with contextlib.suppress(Exception):
                    await self.lease.report(ConsumerState.STOPPED)
                await self.lease.close()  # halted until the process ends: nothing to keep
                return
            except Exception as error:
                if not is_transient(error):
                    raise
                failures += 1
                if is_disconnection(error):
                    self.lease.contact.lost()
                delay = self.options.policy.backoff(failures)
                self._log.warning(
                    "connection trouble; retrying", error=str(error), delay=round(delay, 3)
                )
                with anyio.move_on_after(delay):
                    await stop.wait()
            finally:
                await self.lease.release(close=False)
        if self.state != ConsumerState.STOPPED and not self.paused:
            self.state = ConsumerState.DONE

    async def _acquire(
        self, stop: anyio.Event, until_caught_up: bool, limiter: anyio.CapacityLimiter | None
    ) -> bool:
        """Wait for the lease; in a run until caught up, give up once a live consumer is caught
        up under another process's lease (``worker.engine.standby``). A rebuild's consumers
        wait as before: the rebuild that holds them switches the projection."""
        if not until_caught_up or self._fixed_generation is not None:
            return await self.lease.acquire(stop, limiter)
        return await standby.acquire_unless_done(self.lease, stop, limiter, self._done_elsewhere)

    async def _done_elsewhere(self) -> bool:
        """Nothing after the committed position for this consumer (or an operator paused it):
        the process holding the lease has caught up, and a run until caught up may end."""
        position = await self._positions.load(self.name)
        paused = self.pausable and await pauses.is_paused(self._pool, self.name)
        if not paused and await self._read(position, 1):
            return False
        self._log.info(
            "caught up under another process's lease",
            holder=self.lease.holder,
            position=position,
            paused=paused,
        )
        return True

    async def _consume(self, stop: anyio.Event, until_caught_up: bool) -> None:
        await self._start()
        quiet = 0  # polls in a row that found nothing new
        ahead: list[Message] | None = None
        while not stop.is_set():
            check_held(self.lease, self.name)
            await self.replays.refresh()
            mark = self._waker.mark(self.category)
            if await self._check_pause():
                await self.batches.commit_position()
                if until_caught_up:
                    return
                await self._wait_paused(mark)
                ahead = None
                continue
            if ahead is None:
                await self.batches.drain()  # (its position is where to read from)
                sent = time.time()
                batch = await self._read(self.position)
                self.fresh_at = batch[0].time.timestamp() if batch else sent
            else:
                batch, ahead = ahead, None
                if batch:
                    self.fresh_at = batch[0].time.timestamp()
            if batch:
                quiet = 0
                self.head, self._head_checked = None, True  # (a message at or past the position)
                if len(batch) == self.options.batch_size:
                    full = partial(self.batches.process_full, batch)
                    ahead = await self.batches.ahead.around(batch, full, self._read)
                    continue
                await self.batches.process(batch)
            await self.batches.commit_position()
            await self._caught_up()
            if until_caught_up:
                return
            idle = backoff.delay(quiet + 1, self.options.poll_min, self.options.poll_max)
            if await self._waker.wait(self.category, seconds=idle, since=mark):
                quiet = 0
                if self._waker.recheck_requested(self.name):
                    await self._recheck()
            else:
                quiet += 1
            self.state = ConsumerState.AHEAD if self.head is not None else ConsumerState.RUNNING
        await self.batches.commit_position()  # stopping: what was handled stays handled

    async def _check_pause(self, *, force: bool = False) -> bool:
        """Whether an operator paused this consumer (looked up at most once per refresh
        interval, or at once when a command said so on the control channel)."""
        if not self.pausable or (paused := await self._pause.changed(force=force)) is None:
            return self.paused
        self._log.info("consumer paused" if paused else "consumer resumed")
        self.paused = paused
        if not paused:
            rebuilding = self.refill_to is not None
            self.state = ConsumerState.REBUILDING if rebuilding else ConsumerState.RUNNING
            await self.lease.report(self._state)
        return self.paused

    async def _wait_paused(self, mark: int) -> None:
        """Hold the lease and handle nothing until woken (a resume, a recheck) or a refresh
        interval has passed."""
        if self.state != ConsumerState.PAUSED:
            self.state = ConsumerState.PAUSED
            await self.lease.report(ConsumerState.PAUSED)
        woken = await self._waker.wait(
            self.category, seconds=self.options.refresh_interval, since=mark
        )
        if woken and self._waker.recheck_requested(self.name):
            await self._recheck()

    async def _start(self) -> None:
        """Load the position (and what an operator set beside it) under a fresh lease."""
        stored = await self._pool.fetchrow(q.LOAD_CURSOR, self.name)
        if stored is None and self._fixed_generation is None:
            await self._seed()
            stored = await self._pool.fetchrow(q.LOAD_CURSOR, self.name)
        position, high_water, self.refill_to = stored or (0, 0, None)
        cursor = self.cursor
        cursor.position = cursor.committed = position or 0
        cursor.committed_at = time.monotonic()
        cursor.high_water = high_water or 0
        if self._fixed_generation is None and self.subscriber.read_models:
            found = await generations.state(self._pool, self.subscriber.name)
            cursor.generation = found[0] if found else 1
        await self.replays.refresh(force=True)
        self._head_checked = False  # (at the first catch-up that read nothing: see _caught_up)
        await self._check_pause(force=True)
        self.state = (
            ConsumerState.PAUSED
            if self.paused
            else ConsumerState.REBUILDING
            if self.refill_to is not None
            else ConsumerState.RUNNING
        )
        await self.lease.report(self._state)
        self._log.info(
            "consumer started",
            category=self.category,
            position=self.position,
            epoch=self.lease.epoch,
            rebuilding=self.refill_to is not None,
            paused=self.paused,
        )

    async def _seed(self) -> None:
        """A consumer seen for the first time: a group member after a resize starts where the
        former members were; a subscriber declared ``start_from="head"`` at its category's
        head (later runs resume from their position)."""
        seeded = await seed_from_former_slots(self._pool, self.slot.consumer)
        if seeded is not None:
            self._log.info("position seeded from the former group slots", position=seeded)
        elif self.subscriber.start_from == "head":
            head = await self._store.category_head(self.category) or 0
            if await self._pool.fetchval(q.SEED_POSITION, self.name, head, head) is not None:
                self._log.info("position seeded at the category head (start_from=head)", head=head)

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
            await self.lease.report(ConsumerState.RUNNING)
        if self.head is not None or not self._head_checked:
            # A position beyond the head (set by an operator) reads nothing: looked at when the
            # consumer catches up without having read a message since it started.
            await self._check_head()
            self._head_checked = True
        self.state = ConsumerState.AHEAD if self.head is not None else ConsumerState.CAUGHT_UP

    async def _recheck(self) -> None:
        """Told on the control channel that a command changed this consumer: confirm the lease
        (a fenced one raises ``LeaseLostError``) and the position."""
        await self.batches.drain()
        await self.lease.renew()
        await self._check_pause(force=True)
        committed = await self._positions.load(self.name)
        if committed != self.cursor.committed:
            raise PositionMovedError(
                f"consumer {self.name} was moved from {self.cursor.committed} to {committed}"
            )

    async def _read(self, after: int, limit: int | None = None) -> list[Message]:
        return await self._store.read_category(
            self.category,
            after + 1,
            limit or self.options.batch_size,
            consumer_group_member=self.slot.member,
            consumer_group_size=self.slot.size,
        )
