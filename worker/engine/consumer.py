"""A consumer: one subscriber reading one category, from its position, in batches.

Its lifecycle (``worker.engine.lifecycle``): wait for the lease, load the position, then read
batches (``Reader``) and hand them to ``Batches`` until its stop condition (``Until``) or a
halt; between batches it runs requested replays of parked streams (``Replays``) and sleeps
until woken or its poll interval has passed.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import TYPE_CHECKING

import anyio
import structlog

from worker.engine import standby
from worker.engine.cursor import Cursor
from worker.engine.fencing import check_held
from worker.engine.lifecycle import Life, Step, Until, transition
from worker.engine.parts import build_parts
from worker.engine.pipeline import CommitPipeline
from worker.engine.retry import is_disconnection, is_transient
from worker.engine.subscriber import Slot
from worker.engine.view import ConsumerView
from worker.errors import (
    ConsumerStoppedError,
    LeaseLostError,
    PositionMovedError,
    ReplayFailedError,
)

if TYPE_CHECKING:
    from worker.engine.backend import Backend
    from worker.engine.subscriber import Subscriber
    from worker.engine.tuning import ConsumerOptions
    from worker.engine.wakeups import Waker

log = structlog.get_logger("worker.consumer")


class Consumer(ConsumerView):
    """Runs one (subscriber, category) pair; its name keys its position and lease."""

    def __init__(
        self,
        subscriber: Subscriber,
        category: str,
        backend: Backend,
        *,
        waker: Waker,
        options: ConsumerOptions,
        generation: int | None = None,
        member: int | None = None,
        pausable: bool = True,
        instance: object | None = None,
    ) -> None:
        """On ``backend`` (``worker.engine.backend``); its handlers on ``instance`` (default: a
        new instance of the subscriber's class)."""
        self.subscriber, self.category = subscriber, category
        self.slot = Slot(subscriber, category, member)
        named = self.slot.consumer
        self.consumer_name = named if generation is None else named.building(generation)
        self.name = str(self.consumer_name)
        self._fixed_generation = generation
        self.cursor = Cursor(generation=generation or 1)
        self.life, self._until = Life(), Until(anyio.Event())
        self.pausable = pausable and generation is None  # rebuilds replay regardless
        self.options = options
        self.log = log.bind(consumer=self.name)
        parts = build_parts(
            self.name, self.slot, instance, self.cursor, backend, waker, options, self.log
        )
        self.instance, self.deliveries = parts.instance, parts.deliveries  # (its deadlines)
        self.lease, self.batches, self.replays = parts.lease, parts.batches, parts.replays
        self.reader, self.standing, self._pause = parts.reader, parts.standing, parts.pause
        self.positions, self._store, self._waker = parts.positions, parts.store, parts.waker

    def take(self, *steps: Step) -> None:
        """Take ``steps`` (``worker.engine.lifecycle``)."""
        for step in steps:
            self.life = transition(self.life, step)

    async def enter(self, *steps: Step, report: bool = False) -> None:
        """``take`` the ``steps``; ``report``: tell the lease the new state."""
        self.take(*steps)
        if report:
            await self.lease.report(self.life.state)

    async def close(self) -> None:
        """Close what ``run`` left open (the lease's connection), giving the lease up."""
        await self.lease.close()

    async def replay(self, stream_name: str) -> int:
        """Re-dispatch a stream's parked messages in order (under this consumer's lease)."""
        try:
            done = await self.replays.replay(stream_name)
        except ReplayFailedError:
            self.cursor.replay_failed(stream_name)
            raise
        self.cursor.replayed(stream_name)
        return done

    async def _refresh_parked(self, *, force: bool = False) -> None:
        """Take in the parked streams now and then (running requested replays)."""
        if (parked := await self.replays.refresh(force=force)) is not None:
            self.cursor.parked_streams(parked)

    async def run(self, until: Until, *, limiter: anyio.CapacityLimiter | None = None) -> None:
        """Hold the lease and consume until ``until`` says (or the consumer stops); ``limiter``
        caps the group slots this process holds. The lease is given up, its connection kept."""
        self._until, failures = until, 0
        while not until.stop.is_set():
            await self.enter(Step.WAIT)
            try:
                # A rebuild's consumers wait as ever: the rebuild that holds them switches over.
                gives_up = until.caught_up and self._fixed_generation is None
                if not await standby.acquire(self, until.stop, limiter, gives_up=gives_up):
                    break
                failures = 0
                await self.lease.hold(
                    partial(CommitPipeline.drive, self.batches.pipeline, self._consume)
                )
                break
            except PositionMovedError as error:
                self.log.warning("position moved; starting again from it", error=str(error))
            except LeaseLostError as error:
                self.log.warning("lease lost; waiting to take it back", error=str(error))
            except ConsumerStoppedError:
                await self._halt()
                return
            except Exception as error:
                if not is_transient(error):
                    raise
                failures += 1
                await self._trouble(error, failures)
            finally:
                await self.lease.release(close=False)
        await self.enter(Step.END)

    async def _halt(self) -> None:
        """Halted until the process ends: nothing to keep."""
        self.take(Step.HALT)
        with contextlib.suppress(Exception):
            await self.lease.report(self.life.state)
        await self.lease.close()

    async def _trouble(self, error: Exception, failures: int) -> None:
        """A transient failure: wait (or until stopped) before trying again."""
        if is_disconnection(error):
            self.lease.contact.lost()
        delay = self.options.policy.backoff(failures)
        self.log.warning("connection trouble; retrying", error=str(error), delay=round(delay, 3))
        with anyio.move_on_after(delay):
            await self._until.stop.wait()

    async def _consume(self) -> None:
        await self._start()
        stop, batches = self._until.stop, self.batches
        while not stop.is_set():
            check_held(self.lease, self.name)
            await self._refresh_parked()
            mark = self._waker.mark(self.category)
            if await self._check_pause():
                await batches.commit_position()
                if self._until.caught_up:
                    return
                await self._wait_paused(mark)
                continue
            await self.deliveries.deliver_due()  # a process manager's due deadlines
            if read := await self.reader.next(batches):
                await self.enter(Step.READ)
                if read == self.options.batch_size:
                    continue
            await batches.commit_position()
            await self._caught_up()
            if self._until.caught_up:
                return
            if await self.reader.idle(mark, self.name, at_most=await self.deliveries.wait_bound()):
                await self._recheck()
            await self.enter(Step.WOKE)
        await batches.commit_position()  # stopping: what was handled stays handled

    async def _check_pause(self, *, force: bool = False) -> bool:
        """Whether an operator paused it (looked up once per refresh interval, or when told)."""
        if not self.pausable or (paused := await self._pause.changed(force=force)) is None:
            return self.paused
        self.log.info("consumer paused" if paused else "consumer resumed")
        await self.enter(Step.PAUSE if paused else Step.RESUME, report=True)
        return paused

    async def _wait_paused(self, mark: int) -> None:
        """Hold the lease, handling nothing, until woken or a refresh interval has passed."""
        self.reader.drop_ahead()
        if await self.reader.wait(mark, self.name, self.options.refresh_interval):
            await self._recheck()

    async def _start(self) -> None:
        """Load the position (and what an operator set beside it) under a fresh lease."""
        seeds = self._fixed_generation is None  # (a rebuild's consumer starts at 0)
        standing = await self.standing.load_or_seed(
            self.name, self.slot, self._store, self.log, seeds
        )
        generation = self.cursor.generation
        if self._fixed_generation is None and self.subscriber.read_models:
            generation = await self.standing.generation(self.subscriber.name)
        self.cursor.start(standing.position, standing.high_water, generation)
        await self._refresh_parked(force=True)
        await self._check_pause(force=True)
        self.reader.restart()
        self.reader.handed = standing.handed
        if not standing.indexed:
            self.log.warning(
                "consumer group member reads without its index, scanning the category: "
                "run `worker db install` with this group_size",
                size=self.slot.size,
            )
        refill = Step.REFILLED if standing.refill_to is None else Step.REFILL
        await self.enter(Step.START, refill, report=True)
        self.log.info(
            "consumer started",
            category=self.category,
            position=self.position,
            epoch=self.lease.epoch,
            rebuilding=self.life.refilling,
            paused=self.paused,
        )

    async def _caught_up(self) -> None:
        """Every message up to the head is handled: end a refill, or say the state."""
        if self.life.refilling:
            await self.standing.end_refill(self.name)
            self.log.info("rebuild in place caught up", position=self.position)
            await self.enter(Step.REFILLED, report=True)
        await self.reader.check_head(self.position)
        ahead = Step.AT_HEAD if self.head is None else Step.BEYOND_HEAD
        await self.enter(Step.CAUGHT_UP, ahead)

    async def _recheck(self) -> None:
        """Told on the control channel that a command changed this consumer: confirm the lease
        (a fenced one raises ``LeaseLostError``) and the position."""
        await self.batches.drain()
        await self.lease.renew()
        await self._check_pause(force=True)
        committed = await self.positions.load(self.name)
        if committed != self.cursor.committed:
            raise PositionMovedError(
                f"consumer {self.name} was moved from {self.cursor.committed} to {committed}"
            )
