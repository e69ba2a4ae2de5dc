"""What a consumer shows of itself (to health, metrics, status and the runner's result)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.engine.lifecycle import Life, Mode
from worker.engine.state import ConsumerState

if TYPE_CHECKING:
    from worker.engine.backend import ConsumerLease
    from worker.engine.batch import Batches
    from worker.engine.cursor import Cursor
    from worker.engine.reader import Reader
    from worker.engine.stats import ConsumerStats


class ConsumerView:
    """A consumer's state, position and counts, read from its parts."""

    life: Life
    lease: ConsumerLease
    reader: Reader
    cursor: Cursor
    batches: Batches

    @property
    def state(self) -> ConsumerState:
        """Where it is in its life; ``disconnected`` while it cannot reach the database
        (unless it has halted or returned)."""
        if self.lease.contact.up or self.life.mode in (Mode.STOPPED, Mode.DONE):
            return self.life.state
        return ConsumerState.DISCONNECTED

    @property
    def paused(self) -> bool:
        """Whether an operator paused it (``worker pause``)."""
        return self.life.paused

    @property
    def head(self) -> int | None:
        """The category head, when the position is beyond it."""
        return self.reader.head

    def lag_seconds(self, now: float | None = None) -> float | None:
        """See ``Reader.lag_seconds``."""
        return self.reader.lag_seconds(now)

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
        return self.batches.stats

    @property
    def parked_count(self) -> int:
        """Messages this process parked."""
        return self.cursor.parked_count
