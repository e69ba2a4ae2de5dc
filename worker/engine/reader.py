"""Where a consumer reads: its category (its group member's share) in batches, the next one
read ahead while a full one is applied; how fresh its reads are; whether its position is
beyond the category head."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

from worker.store import backoff

if TYPE_CHECKING:
    from worker.engine.batch import Batches
    from worker.engine.subscriber import Slot
    from worker.engine.tuning import ConsumerOptions
    from worker.engine.wakeups import Waker
    from worker.store.message import Message
    from worker.store.message_store import MessageStore


class Reader:
    """One consumer's reads (see the module doc)."""

    def __init__(
        self, store: MessageStore, waker: Waker, slot: Slot, options: ConsumerOptions, log: Any
    ) -> None:
        self._store = store
        self._waker = waker
        self._slot = slot
        self.category = slot.category
        self._options = options
        self._log = log
        self.fresh_at: float | None = None  # see ``lag_seconds``
        self.head: int | None = None  # the category head, when the position is beyond it
        self._head_checked = False  # whether the position is known not to be beyond the head
        self._ahead: list[Message] | None = None  # the next batch, read ahead
        self._quiet = 0  # polls in a row that found nothing new
        self.handed: tuple[int, tuple[int, ...]] | None = None  # see ``Standing.handed``

    def lag_seconds(self, now: float | None = None) -> float | None:
        """How far behind the present its handling may be: ``now`` (wall clock) minus the time
        of the oldest message it had yet to handle at its last read, or of that read when it
        found nothing new. It keeps growing while the consumer cannot read (the database is
        out of reach, it is paused or halted); ``None`` before its first read."""
        if self.fresh_at is None:
            return None
        return max((time.time() if now is None else now) - self.fresh_at, 0.0)

    def restart(self) -> None:
        """A fresh start: nothing read ahead, the head looked at again at the first catch-up."""
        self._ahead, self._head_checked = None, False

    def drop_ahead(self) -> None:
        """Forget the batch read ahead (the position may have moved meanwhile)."""
        self._ahead = None

    async def read(self, after: int, limit: int | None = None) -> list[Message]:
        """Up to ``limit`` (a batch) messages of the category after global position ``after``."""
        handed = self.handed
        if handed is not None and after >= max(handed[1]):
            handed = self.handed = None  # past every message a former owner had handled
        return await self._store.read_category(
            self.category,
            after + 1,
            limit or self._options.batch_size,
            consumer_group_member=self._slot.member,
            consumer_group_size=self._slot.size,
            handed=handed,
        )

    async def next(self, batches: Batches) -> int:
        """Read the next batch (or take the one read ahead) and apply it; how many messages
        it had. A full batch is applied while the one after it is read ahead."""
        if self._ahead is None:
            await batches.drain()  # (its position is where to read from)
            sent = time.time()
            batch = await self.read(batches.cursor.position)
            self.fresh_at = batch[0].time.timestamp() if batch else sent
        else:
            batch, self._ahead = self._ahead, None
            if batch:
                self.fresh_at = batch[0].time.timestamp()
        if not batch:
            return 0
        self._quiet = 0
        self.head, self._head_checked = None, True  # (a message at or past the position)
        if len(batch) == self._options.batch_size:
            full = partial(batches.process_full, batch)
            self._ahead = await batches.ahead.around(batch, full, self.read)
        else:
            await batches.process(batch)
        return len(batch)

    async def idle(self, mark: int, name: str, *, at_most: float | None = None) -> bool:
        """Wait until woken or the poll interval (longer the longer nothing came; no longer
        than ``at_most`` seconds) has passed; whether a command asked ``name`` to recheck."""
        options = self._options
        seconds = backoff.delay(self._quiet + 1, options.poll_min, options.poll_max)
        if at_most is not None:
            seconds = min(seconds, at_most)
        if await self._waker.wait(self.category, seconds=seconds, since=mark):
            self._quiet = 0
            return self._waker.recheck_requested(name)
        self._quiet += 1
        return False

    async def wait(self, mark: int, name: str, seconds: float) -> bool:
        """Wait until woken or ``seconds`` have passed; whether a command asked ``name`` to
        recheck."""
        woken = await self._waker.wait(self.category, seconds=seconds, since=mark)
        return woken and self._waker.recheck_requested(name)

    async def check_head(self, position: int) -> None:
        """A position beyond the category head (set by an operator) would skip every message
        written until the store catches up with it: say so once (``head``). Looked at when the
        consumer catches up without having read a message since it started."""
        if self.head is None and self._head_checked:
            return
        self._head_checked = True
        head = await self._store.category_head(self.category) or 0
        if position <= head:
            self.head = None
            return
        if self.head is None:
            self._log.error(
                "position is beyond the category head: messages up to it will never be handled; "
                "reset the consumer",
                position=position,
                head=head,
            )
        self.head = head
