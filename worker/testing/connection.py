"""In-memory transactions: what ``ctx.conn`` is when the engine runs on the stand-ins.

A ``MemoryConnection`` is one open transaction over in-memory state. Each stand-in that changes
its state on it records how to undo the change; a rollback undoes them, newest first, so a
failing batch leaves nothing behind, exactly as on PostgreSQL. It runs no SQL: a handler that
uses ``ctx.conn`` directly raises ``InMemorySQLError`` (and the harness reports it).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

import asyncpg

from worker.engine.partitions import SerialConnection
from worker.errors import InMemorySQLError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from worker.store.types import Connection


class MemoryConnection:
    """One open in-memory transaction (a stand-in for an asyncpg connection in a transaction).

    ``transaction()`` opens a savepoint, as asyncpg's does on a connection already in one.
    Statements (``execute``, ``fetch``, ...) raise ``InMemorySQLError``. As on PostgreSQL, a
    statement that failed (a wrong expected version, a duplicate id, a null in a column that
    takes none) aborts the transaction: everything after it fails until it (or the savepoint
    around the failure) rolls back.
    """

    def __init__(self, transactions: MemoryTransactions | None = None) -> None:
        self._transactions = transactions
        self._undo: list[Callable[[], object]] = []
        self._open = True
        self.aborted = False

    def is_in_transaction(self) -> bool:
        """True until the transaction committed or rolled back."""
        return self._open

    def check(self) -> None:
        """Raise unless statements can run in this transaction now."""
        if not self._open:
            raise asyncpg.InterfaceError("this in-memory transaction has ended; open a new one")
        if self.aborted:
            raise asyncpg.InFailedSQLTransactionError(
                "current transaction is aborted, commands ignored until end of transaction block"
            )

    def on_rollback(self, undo: Callable[[], object]) -> None:
        """Record how to undo a change made in this transaction."""
        self.check()
        self._undo.append(undo)

    def transaction(self) -> _Savepoint:
        """A savepoint: an error inside it undoes only what was done inside it."""
        return _Savepoint(self)

    def commit(self) -> None:
        """Keep every change; the transaction ends."""
        self._undo.clear()
        self._open = False

    def rollback(self) -> None:
        """Undo every change, newest first; the transaction ends."""
        self.rollback_to(0)
        self._open = False

    def rollback_to(self, mark: int) -> None:
        """Undo the changes made since ``mark`` (a length of the undo log), newest first."""
        undo = self._undo
        while len(undo) > mark:
            undo.pop()()

    @property
    def mark(self) -> int:
        """Where the undo log stands (for a savepoint)."""
        return len(self._undo)

    # -- SQL: refused ------------------------------------------------------------------------

    def _refuse(self, query: object) -> InMemorySQLError:
        text = " ".join(str(query).split())[:120]
        error = InMemorySQLError(
            f"SQL on ctx.conn cannot run in memory ({text!r}): the testing kit keeps read models, "
            "messages and positions in memory. Write through ctx.table(Model) and ctx.write(...), "
            "or test this handler against PostgreSQL."
        )
        if self._transactions is not None and self._transactions.refused is None:
            self._transactions.refused = error
        return error

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> str:
        raise self._refuse(query)

    async def executemany(self, query: str, *args: Any, **kwargs: Any) -> None:
        raise self._refuse(query)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> list[Any]:
        raise self._refuse(query)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse(query)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse(query)


class _Savepoint:
    __slots__ = ("_conn", "_mark")

    def __init__(self, conn: MemoryConnection) -> None:
        self._conn = conn
        self._mark = 0

    async def __aenter__(self) -> None:
        self._conn.check()
        self._mark = self._conn.mark

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._conn.rollback_to(self._mark)
            self._conn.aborted = False


class MemoryTransactions:
    """Opens in-memory transactions (the ``Transactions`` the engine's batches run in).

    ``committed`` and ``rolled_back`` count the transactions that ended each way; ``refused``
    is the first ``InMemorySQLError`` any of them raised (a handler that ran SQL);
    ``statements`` counts the single statements run on their own (``statement()``).
    """

    def __init__(self) -> None:
        self.committed = 0
        self.rolled_back = 0
        self.statements = 0
        self.refused: InMemorySQLError | None = None

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        return self._unit("committed")

    def statement(self) -> AbstractAsyncContextManager[Connection]:
        return self._unit("statements")

    def lazy(
        self, *, after: Callable[[], Awaitable[None]] | None = None
    ) -> AbstractAsyncContextManager[Connection]:
        """A transaction (in memory, beginning costs nothing: it begins at once, after
        ``after``)."""
        return self._unit("committed", after)

    @contextlib.asynccontextmanager
    async def _unit(
        self, counter: str, after: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[Connection]:
        """A transaction or a statement on its own: either way, all of it or nothing."""
        if after is not None:
            await after()
        conn = MemoryConnection(self)
        try:
            # The engine types its connections as asyncpg's; this one answers the calls the
            # engine and the stand-ins make, and refuses SQL with a clear error.
            yield cast("Connection", conn)
        except BaseException:
            conn.rollback()
            self.rolled_back += 1
            raise
        if conn.aborted:  # PostgreSQL ends a failed transaction's COMMIT with a rollback
            conn.rollback()
            self.rolled_back += 1
            return
        conn.commit()
        setattr(self, counter, getattr(self, counter) + 1)


def joined(conn: object) -> MemoryConnection | None:
    """The in-memory transaction a stand-in's call joins (checked to be usable), or ``None``
    when it runs on its own (committed at once)."""
    if conn is None:
        return None
    if isinstance(conn, SerialConnection):  # a concurrent batch's (``concurrency=n``)
        conn = conn.connection
    if not isinstance(conn, MemoryConnection):
        raise TypeError(
            "the in-memory stand-ins join in-memory transactions only (MemoryTransactions), "
            f"not a {type(conn).__name__}"
        )
    conn.check()
    return conn


def undo_on(conn: object, undo: Callable[[], object]) -> None:
    """Record ``undo`` on an in-memory transaction; nothing when ``conn`` is None (the change
    is committed at once)."""
    memory = joined(conn)
    if memory is not None:
        memory.on_rollback(undo)


def failed(conn: object, error: BaseException) -> BaseException:
    """A statement failed in ``conn``'s transaction: it is aborted, as on PostgreSQL. Returns
    ``error`` to raise."""
    if isinstance(conn, MemoryConnection):
        conn.aborted = True
    return error
