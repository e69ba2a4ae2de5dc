"""Where a unit of work's transaction comes from: a connection of a pool, in a transaction.

``Transactions`` is the seam: the engine opens a batch's transaction through it, so the same
batch code runs on PostgreSQL (``PoolTransactions``) and on the in-memory stand-ins of
``worker.testing``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager

    import asyncpg

    from worker.store.types import Connection


class Transactions(Protocol):
    """Opens transactions: ``async with transactions.transaction() as conn`` commits on
    success and rolls back on any error (or cancellation); ``statement()`` gives a connection
    whose one statement commits on its own (no BEGIN/COMMIT round trips)."""

    def transaction(self) -> AbstractAsyncContextManager[Connection]: ...

    def statement(self) -> AbstractAsyncContextManager[Connection]: ...


class PoolTransactions:
    """Transactions on connections of an asyncpg pool: one connection per transaction."""

    __slots__ = ("pool",)

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    @contextlib.asynccontextmanager
    async def statement(self) -> AsyncIterator[Connection]:
        async with self.pool.acquire() as conn:
            yield conn
