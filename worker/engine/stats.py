"""What a consumer measures about its batches, for the metrics: fixed-bucket histograms and
counters, updated once per batch with monotonic-clock arithmetic and read when scraped.

No metrics library here: ``worker.ops.health`` turns these into Prometheus families at scrape
time, so the batch path pays a ``bisect`` and a few additions per batch, nothing per message.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass, field

# Seconds: a batch's handlers and its commit (1 ms .. 30 s).
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# Seconds: how old a message is when it is handled (10 ms .. a day).
AGE_BUCKETS = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
    86400.0,
)  # fmt: skip


@dataclass
class Histogram:
    """Counts of observed values per bucket (``le`` upper bounds, then +Inf), their sum."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(``le``, values at most that), ending with ``+Inf``: Prometheus's buckets."""
        found, running = [], 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            found.append((bound, float(running)))
        return found


@dataclass
class ConsumerStats:
    """One consumer's measurements in this process."""

    handle: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    commit: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    age: Histogram = field(default_factory=lambda: Histogram(AGE_BUCKETS))
    handler_failures: int = 0  # failed attempts of a message's handlers
    transient_errors: int = 0  # batches tried again after a transient error
    in_flight: int = 0  # partitions being handled right now (concurrency > 1)

    def batch(self, started: float, handled: float, committed: float, oldest: float) -> None:
        """A batch applied: ``perf_counter`` times when its handlers started, when its writes
        were done and when it committed; ``oldest``, its first message's time (epoch seconds)."""
        self.handle.observe(handled - started)
        self.commit.observe(committed - handled)
        self.age.observe(max(time.time() - oldest, 0.0))
