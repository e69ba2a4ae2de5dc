"""Delivering a process manager's due deadlines, once, under its consumer's lease.

The consumer that scheduled a deadline delivers it: between batches it takes the due ones (up
to 100 at a time) and hands each to the instance's handler in one transaction that marks them
fired (a deadline already fired or cancelled is passed over: the row lock orders a delivery and
a cancelling step) and checks the lease's epoch (a zombie delivers nothing), as replays of
parked messages do. When a handler fails, they are delivered again one at a time, so the
failing one is found. A deadline whose handler fails is tried again later with the retry
policy's backoff, and after ``max_attempts`` marked failed (shown by ``worker status`` and the
metrics). The consumer sleeps no longer than until the next one is due (``wait_bound``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from worker.engine.context import Context
from worker.engine.dead_letters import describe
from worker.engine.retry import is_transient
from worker.engine.steps import ProcessSteps
from worker.errors import LeaseLostError, ProcessError
from worker.read.handed import handed_to
from worker.store.message import MessageFields

if TYPE_CHECKING:
    from worker.engine.backend import Backend, ConsumerLease
    from worker.engine.batch import Batches
    from worker.engine.deadlines import Deadline
    from worker.engine.retry import RetryPolicy
    from worker.engine.steps import ProcessStats
    from worker.engine.tuning import ConsumerOptions
    from worker.store.message import Message

_PAGE = 100


class DeadlineMessage(MessageFields, tuple[Any, ...]):
    """A due deadline as the message its handler gets: its id is the deadline's, its stream
    the instance's, its position -1 (it is in no stream), its time when it was due."""

    __slots__ = ()

    @classmethod
    def of(cls, d: Deadline) -> Message:
        row = (d.id, d.instance, d.type, -1, -1, d.data, d.metadata, d.due_at)
        made: Message = tuple.__new__(cls, row)  # type: ignore[assignment]
        return made


class Deliveries:
    """One process manager consumer's deadlines (see the module doc)."""

    def __init__(
        self,
        batches: Batches,
        backend: Backend,
        lease: ConsumerLease,
        policy: RetryPolicy,
        stats: ProcessStats,
        log: Any,
    ) -> None:
        self._batches, self.name = batches, batches.name
        self._backend, self._lease, self._policy = backend, lease, policy
        self.deadlines = backend.deadlines
        self.stats, self._log = stats, log

    async def deliver_due(self) -> int:
        """Deliver every deadline due now; how many were delivered."""
        delivered = 0
        while True:
            due = await self.deadlines.due(self.name, _PAGE)
            if due:
                delivered += await self._deliver(due)
            if len(due) < _PAGE:
                return delivered

    async def wait_bound(self) -> float | None:
        """Seconds until the next deadline is due (0: one is due); ``None``: none pending."""
        due = await self.deadlines.next_due(self.name)
        if due is None:
            return None
        return max(0.0, (due - self.deadlines.now()).total_seconds())

    async def _deliver(self, due: list[Deadline]) -> int:
        """Deliver ``due`` in one transaction; when a handler fails, one at a time, so the
        failing one is found (and retried later, or given up)."""
        try:
            return await self._deliver_together(due)
        except Exception as error:
            if is_transient(error) or isinstance(error, LeaseLostError):
                raise
            if len(due) > 1:
                return sum([await self._deliver([deadline]) for deadline in due])
            await self._failed(due[0], error)
            return 0

    async def _deliver_together(self, due: list[Deadline]) -> int:
        """One transaction: fire each row (passing over those no longer pending), run its
        handler, then check the lease."""
        delivered = 0
        async with self._backend.transactions.transaction() as conn:
            ctx = Context(self.name, conn, self._backend.store, declared=None)
            handed = handed_to.set(ctx.unawaited)
            try:
                for deadline in due:
                    delivered += await self._deliver_one(deadline, ctx)
            finally:
                handed_to.reset(handed)
                ctx.drop_unawaited()
            epoch = await self._backend.positions.lease_epoch_in(conn, self.name)
            if epoch != self._lease.epoch:
                raise LeaseLostError(f"consumer {self.name} lost its lease delivering deadlines")
        self.stats.delivered += delivered
        return delivered

    async def _deliver_one(self, deadline: Deadline, ctx: Context) -> int:
        if not await self.deadlines.fire(ctx.conn, deadline.id):
            return 0
        route = self._batches.routes.get(deadline.type)
        if route is None:  # (its handler was removed since it was scheduled)
            raise ProcessError(
                f"deadline {deadline.id} of {deadline.instance} is a {deadline.type}, which no "
                f"handler of {self.name} takes any more"
            )
        await route.dispatch(DeadlineMessage.of(deadline), ctx)
        return 1

    async def _failed(self, deadline: Deadline, error: Exception) -> None:
        """Keep the failure; try again after the policy's backoff, or give up."""
        attempt = deadline.attempts + 1
        final = attempt >= self._policy.max_attempts
        text = describe(type(error).__qualname__, str(error))
        delay = 0.0 if final else self._policy.backoff(attempt)
        later = self.deadlines.now() + timedelta(seconds=delay)
        await self.deadlines.failed(deadline.id, text, final=final, retry_at=later)
        self.stats.failed_deliveries += 1
        self._log.error(
            "deadline delivery failed" + ("; given up" if final else "; retrying later"),
            deadline=deadline.id,
            instance=deadline.instance,
            type=deadline.type,
            attempt=attempt,
            error=text,
        )


class NoDeadlines:
    """What a consumer that schedules no deadlines delivers: nothing (every consumer but a
    process manager's)."""

    async def deliver_due(self) -> int:
        return 0

    async def wait_bound(self) -> float | None:
        return None


def deliveries_of(
    instance: object,
    batches: Batches,
    backend: Backend,
    lease: ConsumerLease,
    options: ConsumerOptions,
    log: Any,
) -> Deliveries | NoDeadlines:
    """The deliveries of a process manager's consumer (``instance`` its steps); nothing to
    deliver for any other consumer."""
    if not isinstance(instance, ProcessSteps):
        return NoDeadlines()
    return Deliveries(batches, backend, lease, options.policy, instance.stats, log)
