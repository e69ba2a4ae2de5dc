"""Tuning of one consumer."""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.engine.lease import DEFAULT_TTL
from worker.engine.retry import RetryPolicy


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
