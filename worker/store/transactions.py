"""Where a unit of work's transaction comes from: a connection of a pool, in a transaction.

``Transactions`` is the seam: the engine opens a batch's transaction through it, so the same
batch code runs on PostgreSQL (``PoolTransactions``) and on the in-memory stand-ins of
``worker.testing``.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Generator
    from contextlib import AbstractAsyncContextManager

    from worker.store.types import Connection


class Transactions(Protocol):
    """Opens transactions: ``async with transactions.transaction() as conn`` commits on
    success and rolls back on any error (or cancellation); ``statement()`` gives a connection
    whose one statement commits on its own (no BEGIN/COMMIT round trips)."""

    def transaction(self) -> AbstractAsyncContextManager[Connection]: ...

    def statement(self) -> AbstractAsyncContextManager[Connection]: ...

    def lazy(
        self, *, after: Callable[[], Awaitable[None]] | None = None
    ) -> AbstractAsyncContextManager[Connection]:
        """A transaction that begins with the connection's first statement: one nothing ran
        in costs no round trip (``begun``). Ends as ``transaction()``'s. ``after`` is awaited
        before it begins (what must be committed before this transaction may read or write)."""
        ...


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

    @contextlib.asynccontextmanager
    async def lazy(
        self, *, after: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[Connection]:
        async with self.pool.acquire() as conn:
            lazy = LazyTransaction(conn, after=after)
            try:
                yield lazy  # type: ignore[misc]  # answers every call a Connection does
            except BaseException:
                await lazy.end(commit=False)
                raise
            await lazy.end(commit=True)


def statement_method(conn: object, name: str) -> tuple[Any, bool]:
    """``conn``'s attribute ``name``, and whether it runs statements (a coroutine method of
    asyncpg's connection: ``execute``, ``fetch``, ``copy_*``, ``prepare``, ...). A pool's
    connection proxy wraps those in plain functions, so the connection class says which are."""
    attribute = getattr(conn, name)
    reference = getattr(asyncpg.Connection, name, None)
    return attribute, inspect.iscoroutinefunction(reference) or inspect.iscoroutinefunction(
        attribute
    )


def begun(conn: object) -> bool:
    """Whether a statement ran in ``conn``'s transaction (always, but for a ``lazy()`` one)."""
    return conn.begun if isinstance(conn, LazyTransaction) else True


def plain(conn: Connection) -> Connection:
    """The connection under a ``lazy()`` transaction (a statement on it commits on its own)."""
    return conn.connection if isinstance(conn, LazyTransaction) else conn


class LazyTransaction:
    """A connection whose transaction begins (``BEGIN``) just before its first statement.

    A batch whose handlers run no SQL then costs neither ``BEGIN`` nor ``COMMIT``. Every
    statement method of the connection (``execute``, ``fetch``, ``copy_*``, ``prepare``, ...)
    begins it first; ``transaction()`` opens a savepoint inside it and ``cursor()`` iterates
    inside it, as on a connection whose transaction had begun at once. ``after``, when given,
    is awaited before the transaction begins.
    """

    __slots__ = ("_after", "_conn", "_transaction")

    def __init__(
        self, conn: Connection, *, after: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._conn = conn
        self._after = after
        self._transaction: Any = None

    @property
    def connection(self) -> Connection:
        """The connection underneath."""
        return self._conn

    @property
    def begun(self) -> bool:
        """Whether the transaction began (a statement ran, or is running, in it)."""
        return self._transaction is not None

    async def begin(self) -> None:
        if self._transaction is None and self._after is not None:
            await self._after()  # (every caller waits for it: it may raise)
        if self._transaction is None:
            transaction = self._conn.transaction()
            self._transaction = transaction
            await transaction.start()

    async def end(self, *, commit: bool) -> None:
        """Commit (or roll back) the transaction, when it began."""
        transaction, self._transaction = self._transaction, None
        if transaction is None:
            return
        if commit:
            await transaction.commit()
            return
        with contextlib.suppress(Exception):  # the pool rolls back what is left open anyway
            await transaction.rollback()

    def is_in_transaction(self) -> bool:
        """True: statements run inside the transaction, whether it began yet or not."""
        return True

    def transaction(self, **options: Any) -> _Savepoint:
        return _Savepoint(self, options)

    def cursor(self, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(self, self._conn.cursor(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        attribute, runs_statements = statement_method(self._conn, name)
        if not runs_statements or self._transaction is not None:  # (begun: nothing to add)
            return attribute
        begin = self.begin

        async def begun_first(*args: Any, **kwargs: Any) -> Any:
            await begin()
            return await attribute(*args, **kwargs)

        return begun_first


class _Savepoint:
    """``transaction()`` of a ``LazyTransaction``: begins it, then a savepoint inside it."""

    __slots__ = ("_lazy", "_options", "_savepoint")

    def __init__(self, lazy: LazyTransaction, options: dict[str, Any]) -> None:
        self._lazy = lazy
        self._options = options
        self._savepoint: Any = None

    async def __aenter__(self) -> _Savepoint:
        await self._lazy.begin()
        self._savepoint = self._lazy.connection.transaction(**self._options)
        await self._savepoint.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._savepoint.__aexit__(*exc)


class _Cursor:
    """``cursor()`` of a ``LazyTransaction``: iterated or opened inside it."""

    __slots__ = ("_factory", "_lazy")

    def __init__(self, lazy: LazyTransaction, factory: Any) -> None:
        self._lazy = lazy
        self._factory = factory

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._rows()

    async def _rows(self) -> AsyncIterator[Any]:
        await self._lazy.begin()
        async for row in self._factory:
            yield row

    def __await__(self) -> Generator[Any, None, Any]:
        return self._open().__await__()

    async def _open(self) -> Any:
        await self._lazy.begin()
        opened: Awaitable[Any] = self._factory
        return await opened
