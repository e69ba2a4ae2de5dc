"""The throughput benchmark's application (``bench/groups.py``): one handler of the ``work``
category run as a consumer group of ``GROUPS_BENCH_SIZE`` members (1: a single consumer).

``GROUPS_BENCH_HANDLER`` says what handling an event costs: ``cpu`` spins ``GROUPS_BENCH_US``
microseconds of Python, ``io`` waits that long (a call to some service). Each process appends
the wall-clock times of its first and last event to ``GROUPS_BENCH_TIMES``.
"""

from __future__ import annotations

import atexit
import os
import time
from typing import TYPE_CHECKING

import anyio

from worker import BaseEvent, Domain, handle

if TYPE_CHECKING:
    from worker import Context

domain = Domain("groups_bench")

SIZE = int(os.environ.get("GROUPS_BENCH_SIZE", "1"))
KIND = os.environ.get("GROUPS_BENCH_HANDLER", "cpu")
SECONDS = int(os.environ.get("GROUPS_BENCH_US", "50")) / 1_000_000
TIMES = os.environ.get("GROUPS_BENCH_TIMES", "")


@domain.event(category="work")
class Arrived(BaseEvent):
    item: int


def spin(seconds: float) -> int:
    """Python work for ``seconds`` of this thread's CPU time."""
    end, n = time.thread_time() + seconds, 0
    while time.thread_time() < end:
        n += 1
    return n


class Stamps:
    """The wall-clock times of the first and the latest event this process handled."""

    def __init__(self) -> None:
        self.first = 0.0
        self.last = 0.0

    def mark(self) -> None:
        now = time.time()
        self.first = self.first or now
        self.last = now

    def write(self) -> None:
        if TIMES and self.first:
            with open(TIMES, "a") as out:
                out.write(f"{self.first} {self.last}\n")


STAMPS = Stamps()
atexit.register(STAMPS.write)


@domain.event_handler(name="work", stream_categories=["work"], group_size=SIZE)
class Work:
    @handle(Arrived)
    async def arrived(self, event: Arrived, ctx: Context) -> None:
        STAMPS.mark()
        if KIND == "cpu":
            spin(SECONDS)
        else:
            await anyio.sleep(SECONDS)
