"""Where a consumer stands: its position, what it committed, its parked streams, its counts.

The consumer is the cursor's only writer. Its batches and replays read it through ``Standpoint``
(read-only) and answer with values: a batch says what it ``Applied``, a replay which parked
streams remain; the consumer applies them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping


class Standpoint(Protocol):
    """A cursor as its batches and replays see it: read-only."""

    @property
    def position(self) -> int: ...

    @property
    def committed(self) -> int: ...

    @property
    def committed_at(self) -> float: ...

    @property
    def high_water(self) -> int: ...

    @property
    def generation(self) -> int: ...

    @property
    def parked(self) -> Mapping[str, bool]: ...


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying messages (a batch, or one parked message) did to where a consumer stands."""

    position: int  # the global position last handled
    committed: bool = True  # its position committed too, not left for later
    messages: int = 0  # messages handled or parked
    parked: int = 0  # of which parked (behind a parked stream, or after failing)
    parked_stream: str | None = None  # the stream of a message parked after failing


@dataclass
class Cursor:
    """Where a consumer stands (see the module doc)."""

    position: int = 0  # the global position last handled (committed, or about to be)
    committed: int = 0  # the global position last committed
    committed_at: float = 0.0  # when (``time.monotonic()``)
    high_water: int = 0  # the highest ever committed (above ``position`` after a reset)
    generation: int = 1  # the table generation its read models write to
    processed: int = 0  # messages this process handled (or parked)
    parked_count: int = 0  # messages this process parked
    parked: dict[str, bool] = field(default_factory=dict)  # parked stream -> replay requested

    def start(self, position: int, high_water: int, generation: int) -> None:
        """Stand at ``position``, committed (a consumer that just loaded it)."""
        self.position = self.committed = position
        self.committed_at = time.monotonic()
        self.high_water, self.generation = high_water, generation

    def apply(self, applied: Applied) -> None:
        """Take in what a batch (or a parked message) did."""
        self.position = applied.position
        if applied.committed:
            self.committed, self.committed_at = applied.position, time.monotonic()
        self.processed += applied.messages
        self.parked_count += applied.parked
        if applied.parked_stream is not None:
            self.parked.setdefault(applied.parked_stream, False)

    def parked_streams(self, streams: dict[str, bool]) -> None:
        """The parked streams as the dead letters have them now (stream -> replay requested)."""
        self.parked = streams

    def replayed(self, stream: str) -> None:
        """``stream``'s parked messages were handled again: it holds nothing back any more."""
        self.parked.pop(stream, None)

    def replay_failed(self, stream: str) -> None:
        """A replay of ``stream`` failed: it stays parked, its replay request withdrawn."""
        self.parked[stream] = False
