"""A projector's batches committed behind the next one's handlers (the commit pipeline).

While the consumer is behind, once a full batch's handlers are done, its read-model changes,
position and commit go on in the background while the next batch's handlers run. The next
batch writes nothing before that commit: its first statement, and its own commit, wait for it.
Should that commit fail, the next batch's work is dropped unwritten, and both are applied again
the usual way (the failing one isolated as ever). Read models and positions stay exactly once;
what a projector's handlers do outside the transaction may run again, as any handler's outside
effects may.

The consumer drives it: ``running`` around its work, ``drain`` before it reads from its
position or looks at what its batches parked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from worker.engine.outcomes import EarlierBatchFailed, FlushFailed, HandlerFailed
from worker.engine.retry import is_transient

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from anyio.abc import TaskGroup

    from worker.store.message import Message


@dataclass(eq=False)
class PendingCommit:
    """A batch whose changes, position and commit go on behind the next batch."""

    batch: Sequence[Message]
    handled: anyio.Event = field(default_factory=anyio.Event)  # the consumer may go on
    done: anyio.Event = field(default_factory=anyio.Event)
    writing: bool = False  # its handlers are done and its writing goes on behind
    ok: bool = False  # applied and committed
    error: Exception | None = None

    async def finished(self) -> None:
        """Wait until its task has ended (a set event's ``wait`` would still yield)."""
        if not self.done.is_set():
            await self.done.wait()

    async def committed(self) -> None:
        """Wait until it has committed; ``EarlierBatchFailed`` if it failed."""
        await self.finished()
        if self.error is not None:
            raise EarlierBatchFailed(self.batch[-1].global_position, self.error)


async def committed(earlier: PendingCommit | None) -> None:
    """Wait for ``earlier`` (if any) to commit; ``EarlierBatchFailed`` if it failed."""
    if earlier is not None:
        await earlier.committed()


class CommitPipeline:
    """One consumer's batches committing behind (see the module doc).

    ``write(batch, pending, earlier)`` handles and writes a batch behind ``earlier``;
    ``apply`` and ``process`` apply a batch the usual way (once, or isolating failures).
    """

    def __init__(
        self,
        write: Callable[[Sequence[Message], PendingCommit, PendingCommit | None], Awaitable[None]],
        apply: Callable[[Sequence[Message]], Awaitable[None]],
        process: Callable[[Sequence[Message]], Awaitable[None]],
        log: Any,
    ) -> None:
        self._write = write
        self._apply = apply
        self._process = process
        self._log = log
        self._group: TaskGroup | None = None  # where batches commit behind (``running``)
        self._last: PendingCommit | None = None  # the batch last left to commit behind

    @property
    def open(self) -> bool:
        """Whether batches may commit behind now (inside ``running``)."""
        return self._group is not None

    def committing(self) -> bool:
        """Whether a batch is still committing behind."""
        return self._last is not None and not self._last.done.is_set()

    @staticmethod
    async def drive(pipeline: CommitPipeline | None, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` inside ``pipeline.running`` (as it is without a pipeline)."""
        await (work() if pipeline is None else pipeline.running(work))

    async def running(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` with batches free to commit behind. Should ``work`` fail, a batch
        still committing is cancelled: rolled back, or committed whole; either way its
        position says which."""
        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                await work()
                await self.drain()
            except Exception as error:
                failure = error
                group.cancel_scope.cancel()
            finally:
                self._group, self._last = None, None
        if failure is not None:
            raise failure

    async def drain(self) -> None:
        """Wait for the batch committing behind, if any; if it failed, apply it again the
        usual way (before anything else is read or written)."""
        last = self._last
        if last is None:
            return
        await last.finished()
        self._last = None
        if last.error is not None:
            await self._again(last)

    async def _again(self, pending: PendingCommit) -> None:
        """Apply again a batch whose commit behind failed. (A batch goes behind only once the
        one before it has committed, so its failure is its own.)"""
        error = pending.error
        assert error is not None
        if not isinstance(error, FlushFailed | HandlerFailed) and not is_transient(error):
            raise error  # not the batch's doing (the lease, the position): as if it were ours
        self._log.warning(
            "batch committing behind failed; applying it again",
            error=str(error),
            messages=len(pending.batch),
            position=pending.batch[-1].global_position,
        )
        await self._process(pending.batch)

    async def apply(self, batch: Sequence[Message]) -> None:
        """Handle ``batch`` in a task of its own that then writes it behind (returns once the
        handlers are done and the batch before it is committed); a batch that failed before
        that is the caller's, as ``apply``'s."""
        assert self._group is not None
        pending, earlier = PendingCommit(batch), self._last
        self._group.start_soon(self._run, pending, earlier)
        await pending.handled.wait()
        if pending.writing:
            self._last = pending
            return
        if isinstance(pending.error, EarlierBatchFailed):  # this one wrote nothing: both again
            await self.drain()
            await self._apply(batch)
            return
        if pending.error is not None:
            raise pending.error
        if not pending.ok:  # its task ended otherwise (cancelled): the task group says how
            await anyio.lowlevel.checkpoint()
            raise RuntimeError(f"the batch ending at {batch[-1].global_position} was not applied")
        self._last = None  # done whole (it wrote nothing but its position)

    async def _run(self, pending: PendingCommit, earlier: PendingCommit | None) -> None:
        try:
            await self._write(pending.batch, pending, earlier)
            pending.ok = True
        except Exception as error:
            pending.error = error
            if not pending.writing and earlier is not None and earlier.error is not None:
                # Whatever a handler made of the failure it met (wrapped, or its own after
                # swallowing it), this batch failed because the one before did.
                pending.error = EarlierBatchFailed(earlier.batch[-1].global_position, earlier.error)
        finally:
            pending.done.set()
            pending.handled.set()
