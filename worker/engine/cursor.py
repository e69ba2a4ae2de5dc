"""Where a consumer stands: its position, what it committed, and what it counted."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.engine.stats import ConsumerStats

if TYPE_CHECKING:
    from collections.abc import Sequence

    from worker.store.message import Message


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

    def start(self, position: int, high_water: int) -> None:
        """Stand at ``position``, committed (a consumer that just loaded it)."""
        self.position = self.committed = position
        self.committed_at = time.monotonic()
        self.high_water = high_water

    def mark_committed(self) -> None:
        """The position handled is the position committed, as of now."""
        self.committed, self.committed_at = self.position, time.monotonic()

    def handled(self, batch: Sequence[Message], queued: int, *, committed: bool) -> None:
        """``batch`` is handled (``queued`` of its messages parked behind a parked stream;
        ``committed``: its position too, not left for later)."""
        self.position = batch[-1].global_position
        if committed:
            self.mark_committed()
        self.processed += len(batch)
        self.parked_count += queued

    def parked_one(self, message: Message) -> None:
        """``message`` is parked, its position committed with it."""
        self.parked.setdefault(message.stream_name, False)
        self.position = message.global_position
        self.mark_committed()
        self.processed += 1
        self.parked_count += 1
