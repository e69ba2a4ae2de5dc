"""Ownership of a consumer: a session advisory lock plus a fencing epoch.

Whoever holds the lock bumps the consumer's epoch; positions only commit while the committing
process's epoch is current, so a process that lost its lock (a zombie) can never commit.
The lock lives on a connection of its own and goes away with it when the owner dies.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker import _queries as q
from worker.database import connect

if TYPE_CHECKING:
    import asyncpg

log = structlog.get_logger(__name__)

LOCK_CLASS = 0x574B  # first key of pg_advisory_lock(int, int): the worker's consumers


def owner_id() -> str:
    """Who holds a lease: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Lease:
    """The right to run one consumer; ``epoch`` is valid while ``held``."""

    def __init__(self, dsn: str, consumer: str, *, retry_interval: float = 1.0) -> None:
        self._dsn = dsn
        self.consumer = consumer
        self.retry_interval = retry_interval
        self._conn: asyncpg.Connection[Any] | None = None
        self.epoch = 0

    @property
    def held(self) -> bool:
        """True while the lock's connection is open."""
        return self._conn is not None and not self._conn.is_closed()

    async def try_acquire(self) -> bool:
        """Take the lease if it is free; True on success."""
        conn = await connect(self._dsn)
        try:
            if await conn.fetchval(q.TRY_LOCK, LOCK_CLASS, self.consumer):
                self.epoch = await conn.fetchval(q.BUMP_EPOCH, self.consumer, owner_id())
                self._conn, conn = conn, None  # type: ignore[assignment]
                log.debug("lease acquired", consumer=self.consumer, epoch=self.epoch)
                return True
            return False
        finally:
            if conn is not None:
                await conn.close()

    async def acquire(self, stop: anyio.Event | None = None) -> bool:
        """Wait until the lease is ours (True) or ``stop`` is set (False)."""
        waited = False
        while stop is None or not stop.is_set():
            if await self.try_acquire():
                return True
            if not waited:
                log.info("waiting for consumer held by another process", consumer=self.consumer)
                waited = True
            with anyio.move_on_after(self.retry_interval):
                if stop is not None:
                    await stop.wait()
                else:
                    await anyio.sleep(self.retry_interval)
        return False

    async def report(self, state: str) -> None:
        """Record the consumer's state for ``worker status`` (e.g. ``stopped``)."""
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.execute(q.REPORT_STATE, self.consumer, state)

    async def release(self) -> None:
        """Give the lease up (closing its connection releases the lock in any case)."""
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        with anyio.move_on_after(2, shield=True):
            try:
                await conn.fetchval(q.UNLOCK, LOCK_CLASS, self.consumer)
            finally:
                await conn.close()
