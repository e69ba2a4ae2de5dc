"""Stream-wise concurrency: a batch's messages handled partition by partition, concurrently.

A subscriber registered with ``concurrency=n`` (n > 1) has each batch split into partitions by
``partition_by(message)`` (default: the stream name). Up to ``n`` partitions are handled at
once, each by a task that handles its messages strictly in order; different partitions
interleave. The batch still commits once, together with the position: the tasks share the
batch's transaction through a connection that runs one statement at a time
(``SerialConnection``) and the batch's read-model tables, and each has a ``Context`` of its own
(its message, the ids of what it writes).

Concurrency helps handlers that wait (an HTTP call, mail, another database): while one waits,
others run. It cannot speed up pure-Python work, which holds the one thread either way.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio

from worker.store.transactions import statement_method

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable, Sequence

    from worker.store.message import Message
    from worker.store.types import Connection

PartitionKey: TypeAlias = "Callable[[Message], Hashable]"


def by_stream(message: Message) -> str:
    """The default partition: the message's stream, so each stream is handled in order."""
    stream: str = message[1]
    return stream


@dataclass(frozen=True, slots=True)
class Concurrency:
    """How many partitions of a batch run at once, and what a message's partition is."""

    limit: int
    partition_by: PartitionKey = by_stream


def partitions(
    batch: Sequence[Message], indices: Sequence[int], key: PartitionKey
) -> list[list[int]]:
    """The ``indices`` of ``batch`` grouped by partition, each group in batch order, the groups
    in the order of their first message. ``PartitionKeyError`` when ``key`` fails for one
    (raises, or gives something unhashable)."""
    groups: dict[Hashable, list[int]] = {}
    for index in indices:
        try:
            part = key(batch[index])
            group = groups.get(part)
        except Exception as error:
            error.add_note(f"(raised by partition_by for {batch[index]!r})")
            raise PartitionKeyError(index, error) from error
        if group is None:
            groups[part] = [index]
        else:
            group.append(index)
    return list(groups.values())


class PartitionKeyError(Exception):
    """``partition_by`` failed for the message at ``index`` of the batch."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


async def run_partitions(
    groups: list[list[int]], limit: int, handle: Callable[[list[int]], Awaitable[None]]
) -> None:
    """Run ``handle(group)`` for every group, at most ``limit`` at once.

    The first error stops every group (the batch's transaction is rolled back anyway) and is
    raised as it is, not wrapped in an exception group.
    """
    pending = deque(groups)
    failed: list[Exception] = []

    async def runner(scope: anyio.CancelScope) -> None:
        while pending and not failed:
            group = pending.popleft()
            try:
                await handle(group)
            except Exception as error:
                failed.append(error)
                scope.cancel()
                return

    async with anyio.create_task_group() as tg:
        for _ in range(min(limit, len(groups))):
            tg.start_soon(runner, tg.cancel_scope)
    if failed:
        raise failed[0]


_OUTSIDE_THE_TURNS = (
    "a handler with concurrency > 1 cannot use {} on ctx.conn: the partitions take turns on "
    "the batch's connection one statement at a time, and its statements would run outside them"
)


class SerialConnection:
    """The batch's connection, shared by concurrent handlers: one statement at a time.

    asyncpg runs one statement per connection; handlers of different partitions take turns:
    every coroutine method of the connection (``execute``, ``fetch``, ``copy_*``, ...) waits for
    the one before to end. Opening a transaction or savepoint on it is refused: the batch's
    transaction is shared. So are ``prepare`` and ``cursor``, whose statements would run
    outside the turns.
    """

    __slots__ = ("_conn", "_lock")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = anyio.Lock()

    @property
    def connection(self) -> Connection:
        """The connection it shares."""
        return self._conn

    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            "a handler with concurrency > 1 cannot open a transaction on ctx.conn: the "
            "partitions share the batch's transaction (its statements commit with the position)"
        )

    # A prepared statement or a cursor runs its statements later, outside the turns: another
    # partition's statement would meet asyncpg's "another operation is in progress" (taken for
    # a lost connection, so the batch would be retried over and over).
    def prepare(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(_OUTSIDE_THE_TURNS.format("prepare"))

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(_OUTSIDE_THE_TURNS.format("cursor"))

    def __getattr__(self, name: str) -> Any:
        attribute, runs_statements = statement_method(self._conn, name)
        if not runs_statements:
            return attribute
        lock = self._lock

        async def in_turn(*args: Any, **kwargs: Any) -> Any:
            async with lock:
                return await attribute(*args, **kwargs)

        return in_turn
