"""What the console's live pages show: the latest look at every consumer (``worker status
--watch``'s frames, the same code) and each consumer's rate over the last minute."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import structlog

from worker.ops.status import watch

if TYPE_CHECKING:
    from worker.domain import Domain
    from worker.ops.status import Frame

log = structlog.get_logger("worker.console")

# The span of the rate charts, in seconds.
SPAN = 60.0


class Live:
    """The latest frame (numbered from 1) and each consumer's recent rates; ``run`` keeps
    them current, ``newer`` waits for the next frame."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.frame: Frame | None = None
        self.number = 0
        self.rates: dict[str, deque[float]] = {}
        self._size = math.ceil(SPAN / interval) + 1
        self._changed = anyio.Event()
        self.problem: str | None = None

    async def run(self, pool: asyncpg.Pool[Any], domain: Domain) -> None:
        """Look at every consumer each ``interval`` seconds, until cancelled. While the
        database cannot be read, ``problem`` says why (the pages show it with the last
        frame) and the looks go on."""
        while True:
            try:
                async for frame in watch(pool, domain, self.interval):
                    self.problem = None
                    self.record(frame)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                self.problem = f"the status cannot be read: {error}"
                log.warning("console status unreadable", error=str(error))
                await anyio.sleep(self.interval)

    def record(self, frame: Frame) -> None:
        """Take ``frame`` as the latest and wake everyone waiting for it."""
        for name, rate in frame.rates.items():
            if rate is not None:
                self.rates.setdefault(name, deque(maxlen=self._size)).append(rate)
        self.frame = frame
        self.number += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def newer(self, than: int) -> Frame:
        """The first frame numbered above ``than`` (waiting for it when there is none yet)."""
        while self.number <= than or self.frame is None:
            await self._changed.wait()
        return self.frame
