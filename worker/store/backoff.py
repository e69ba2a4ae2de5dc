"""Capped exponential backoff: the one formula every growing wait uses.

Connection retries while a server starts, the LISTEN connection's reconnects, the retry policy
of handlers and batches (which adds jitter), and idle polling all wait ``base``, then twice as
long each time, never more than ``cap``.
"""

from __future__ import annotations


def delay(attempt: int, base: float, cap: float) -> float:
    """The wait before try ``attempt + 1`` (``attempt`` counts from 1): ``base * 2^(attempt-1)``,
    at most ``cap``."""
    return float(min(cap, base * 2.0 ** (max(attempt, 1) - 1)))
