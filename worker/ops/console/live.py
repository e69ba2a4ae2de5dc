"""What the console's live pages show: the latest look at every consumer (``worker status
--watch``'s frames, the same code) and each consumer's rate over the last minute."""

from __future__ import annotations

import math
from collections import deque
from contextlib import aclosing, asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import structlog

from worker.ops.status import watch

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from worker.domain import Domain
    from worker.ops.status import Frame

log = structlog.get_logger("worker.console")

# The span of the rate charts, in seconds.
SPAN = 60.0


class Live:
    """The latest frame (numbered from 1) and each consumer's recent rates. ``run`` keeps
    them current while anyone looks: an open live page (``watching``) or a request waiting
    for a frame (``newer``, ``fresh``); with no page open it reads nothing."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.frame: Frame | None = None
        self.number = 0
        self.rates: dict[str, deque[float]] = {}
        self.problem: str | None = None
        self._size = math.ceil(SPAN / interval) + 1
        self._changed = anyio.Event()
        self._wanted = anyio.Event()
        self._watchers = 0
        self._waiting = 0

    def _needed(self) -> bool:
        return self._watchers > 0 or self._waiting > 0

    async def run(self, pool: asyncpg.Pool[Any], domain: Domain) -> None:
        """Look at every consumer each ``interval`` seconds while needed, until cancelled.
        While the database cannot be read, ``problem`` says why (the pages show it with the
        last frame) and the looks go on."""
        while True:
            if not self._needed():
                self._wanted = anyio.Event()
                await self._wanted.wait()
            try:
                await self._look(pool, domain)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                self.problem = f"the status cannot be read: {error}"
                log.warning("console status unreadable", error=str(error))
                await anyio.sleep(self.interval)

    async def _look(self, pool: asyncpg.Pool[Any], domain: Domain) -> None:
        """Frames until no one needs them any more."""
        async with aclosing(watch(pool, domain, self.interval)) as frames:
            async for frame in frames:
                self.problem = None
                self.record(frame)
                if not self._needed():
                    return

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
        self._waiting += 1
        self._wanted.set()
        try:
            while self.number <= than or self.frame is None:
                await self._changed.wait()
            return self.frame
        finally:
            self._waiting -= 1

    async def fresh(self) -> Frame:
        """The latest frame if it is at most ``interval`` old, else the next one."""
        if self.frame is not None and _age(self.frame) <= self.interval:
            return self.frame
        return await self.newer(self.number)

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Keep the frames coming while in this block (an open live page)."""
        self._watchers += 1
        self._wanted.set()
        try:
            yield
        finally:
            self._watchers -= 1


def _age(frame: Frame) -> float:
    return (datetime.now(UTC) - frame.at).total_seconds()
