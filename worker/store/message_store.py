"""The MessageDB client: write with optimistic concurrency, read streams and categories."""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any

import asyncpg

from worker.errors import ExpectedVersionError, WorkerError
from worker.store import queries as q
from worker.store.message import Message, NewMessage
from worker.store.stream_name import check_category, check_stream_name
from worker.store.tracing import stamp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from datetime import datetime
    from typing import Self

    from worker.store.types import Connection, Executor

_WRONG_VERSION = re.compile(
    r"Wrong expected version: (-?\d+) \(Stream: (.*), Stream Version: (-?\d+)\)"
)


def _version_error(error: asyncpg.RaiseError) -> ExpectedVersionError | None:
    match = _WRONG_VERSION.search(str(error))
    if match is None:
        return None
    return ExpectedVersionError(match[2], int(match[1]), int(match[3]))


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


def _check_group(member: int | None, size: int | None) -> None:
    if (member is None) != (size is None):
        raise ValueError("consumer_group_member and consumer_group_size must be given together")
    if size is not None and member is not None and not 0 <= member < size:
        raise ValueError(
            f"consumer_group_member must be in 0..{size - 1} for group size {size}, got {member}"
        )


class MessageStore:
    """Reads and writes MessageDB through an asyncpg pool (or one connection).

    Every method takes an optional ``conn`` so a write can join the caller's transaction.
    Writes go through ``message_store.write_message``, which takes the category's advisory
    lock; so within a category, global positions commit in order.
    """

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    @property
    def executor(self) -> Executor:
        """The pool or connection this store runs its statements on."""
        return self._executor

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._executor.close()

    # -- writing -----------------------------------------------------------------------------

    async def write(
        self,
        stream_name: str,
        message: NewMessage,
        *,
        expected_version: int | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Write one message; return its stream position.

        ``expected_version`` is the stream's current version (``-1``: the stream must not exist);
        a mismatch raises ``ExpectedVersionError`` and writes nothing. With tracing on, the
        current trace context goes into its metadata (``worker.store.tracing``).
        """
        check_stream_name(stream_name)
        executor = conn or self._executor
        try:
            position: int = await executor.fetchval(
                q.WRITE_MESSAGE,
                message.id,
                stream_name,
                message.type,
                message.data,
                stamp(message.metadata),
                expected_version,
            )
        except asyncpg.RaiseError as error:
            raise _version_error(error) or error from error
        return position

    async def write_batch(
        self,
        stream_name: str,
        messages: Sequence[NewMessage],
        *,
        expected_version: int | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Write several messages to one stream atomically (all or none); return the last position.

        The expected version is checked before the first message; the rest follow it in the same
        transaction, which holds the category's lock, so no other writer can come in between.
        """
        check_stream_name(stream_name)
        if not messages:
            raise ValueError(f"write_batch to {stream_name!r} needs at least one message")
        if conn is not None:
            return await self._write_all(conn, stream_name, messages, expected_version)
        async with self._acquire() as own, own.transaction():
            return await self._write_all(own, stream_name, messages, expected_version)

    async def _write_all(
        self,
        conn: Connection,
        stream_name: str,
        messages: Sequence[NewMessage],
        expected_version: int | None,
    ) -> int:
        first = await self.write(
            stream_name, messages[0], expected_version=expected_version, conn=conn
        )
        rest = messages[1:]
        if rest:
            await conn.executemany(
                q.WRITE_MESSAGE,
                [
                    (m.id, stream_name, m.type, m.data, stamp(m.metadata), first + i)
                    for i, m in enumerate(rest)
                ],
            )
        return first + len(rest)

    async def lock_category(self, stream_name: str, conn: Connection) -> None:
        """Take the lock ``write_message`` takes on ``stream_name``'s category, in ``conn``'s
        transaction until it ends: what is read of the category after it cannot change before
        this transaction writes (every writer of the category waits for it)."""
        check_stream_name(stream_name)
        await conn.execute(q.ACQUIRE_LOCK, stream_name)

    # -- reading -----------------------------------------------------------------------------

    async def read_stream(
        self,
        stream_name: str,
        position: int = 0,
        batch_size: int = 1000,
        *,
        conn: Connection | None = None,
    ) -> list[Message]:
        """Up to ``batch_size`` messages of a stream from ``position``, in stream order."""
        check_stream_name(stream_name)
        _check_batch_size(batch_size)
        rows: list[Message] = await (conn or self._executor).fetch(
            q.READ_STREAM, stream_name, position, batch_size, record_class=Message
        )
        return rows

    async def iter_stream(
        self, stream_name: str, position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[Message]:
        """Every message of a stream from ``position``, read ``batch_size`` at a time."""
        while True:
            batch = await self.read_stream(stream_name, position, batch_size)
            for message in batch:
                yield message
            if len(batch) < batch_size:
                return
            position = batch[-1].position + 1

    async def read_category(
        self,
        category: str,
        position: int = 1,
        batch_size: int = 1000,
        *,
        correlation: str | None = None,
        consumer_group_member: int | None = None,
        consumer_group_size: int | None = None,
        handed: tuple[int, Sequence[int]] | None = None,
        conn: Connection | None = None,
    ) -> list[Message]:
        """Up to ``batch_size`` messages of a category from global ``position``, in global order.

        The same rows as ``message_store.get_category_messages``: ``correlation`` keeps messages
        whose ``correlationStreamName`` is in that category; a consumer group member gets the
        streams whose cardinal id hashes to it, read through its group size's index when
        ``worker db install`` made one (``worker.store.group_index``). ``handed``: (the
        size before a resize, the final positions of its members): leave out each message whose
        stream's former owner had handled it.
        """
        check_category(category)
        _check_batch_size(batch_size)
        _check_group(consumer_group_member, consumer_group_size)
        if correlation is not None:
            check_category(correlation)
        executor = conn or self._executor
        args = (category, position, batch_size, correlation)
        if handed is not None:
            group = (
                None
                if consumer_group_size is None
                else (consumer_group_member, consumer_group_size)
            )
            return await self._read_handed(executor, args, group, handed)
        if consumer_group_size is None:
            rows: list[Message] = await executor.fetch(q.READ_CATEGORY, *args, record_class=Message)
        else:
            statement = q.read_group(consumer_group_size)
            rows = await executor.fetch(
                statement, *args, consumer_group_member, record_class=Message
            )
        return rows

    async def _read_handed(
        self,
        executor: Executor,
        args: tuple[object, ...],
        group: tuple[int | None, int] | None,
        handed: tuple[int, Sequence[int]],
    ) -> list[Message]:
        """A read after a resize (see ``read_category``)."""
        from_size, positions = handed
        if len(positions) != from_size:
            raise ValueError(f"{len(positions)} final positions for a group of {from_size}")
        statement = q.read_handed(None if group is None else group[1], from_size)
        grouped = () if group is None else (group[0],)
        rows: list[Message] = await executor.fetch(
            statement, *args, *grouped, list(positions), record_class=Message
        )
        return rows

    async def global_head(self) -> int | None:
        """The newest global position of the whole store, or ``None`` when it is empty."""
        head: int | None = await self._executor.fetchval(q.GLOBAL_HEAD)
        return head

    async def read_all(
        self, position: int = 1, batch_size: int = 1000, *, types: Sequence[str] | None = None
    ) -> list[Message]:
        """Up to ``batch_size`` messages of every stream from global ``position``, in global
        order; only those of ``types`` when given."""
        _check_batch_size(batch_size)
        rows: list[Message] = await self._executor.fetch(
            q.READ_ALL,
            position,
            batch_size,
            None if types is None else list(types),
            record_class=Message,
        )
        return rows

    async def last_message(self, stream_name: str, type: str | None = None) -> Message | None:
        """The newest message of a stream (of ``type``, when given), or ``None``."""
        check_stream_name(stream_name)
        row: Message | None = await self._executor.fetchrow(
            q.LAST_MESSAGE, stream_name, type, record_class=Message
        )
        return row

    async def message_at(self, global_position: int) -> Message | None:
        """The message at ``global_position``, or ``None`` when there is none."""
        row: Message | None = await self._executor.fetchrow(
            q.READ_BY_GLOBAL_POSITION, global_position, record_class=Message
        )
        return row

    async def stream_version(
        self, stream_name: str, *, conn: Connection | None = None
    ) -> int | None:
        """The position of the stream's last message, or ``None`` if the stream is empty."""
        check_stream_name(stream_name)
        version: int | None = await (conn or self._executor).fetchval(q.STREAM_VERSION, stream_name)
        return version

    async def category_head(self, category: str, *, conn: Connection | None = None) -> int | None:
        """The global position of the newest message in a category, or ``None`` if empty."""
        check_category(category)
        head: int | None = await (conn or self._executor).fetchval(q.CATEGORY_HEAD, category)
        return head

    @contextlib.asynccontextmanager
    async def transaction(self, conn: Connection | None = None) -> AsyncIterator[Connection]:
        """A connection in a transaction: ``conn``'s (a savepoint if it is in one already), or
        one of the store's own."""
        async with self._acquire() if conn is None else _Given(conn) as own, own.transaction():
            yield own

    async def lag(self, category: str, position: int) -> tuple[int, datetime | None]:
        """How many messages of ``category`` lie after ``position``, and the oldest one's time."""
        check_category(category)
        row = await self._executor.fetchrow(q.CATEGORY_LAG, category, position)
        assert row is not None  # an aggregate always returns a row
        return row[0], row[1]

    async def count_between(self, category: str, after: int, upto: int) -> int:
        """How many messages of ``category`` have a global position in (``after``, ``upto``]."""
        check_category(category)
        found: int = await self._executor.fetchval(q.CATEGORY_COUNT, category, after, upto)
        return found

    def _acquire(self) -> _Acquired:
        return _Acquired(self._executor)


class _Acquired:
    """A connection from the pool, or the store's own connection, as an async context."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._pooled: Any = None

    async def __aenter__(self) -> Connection:
        if isinstance(self._executor, asyncpg.Pool):
            self._pooled = self._executor.acquire()
            conn: Connection = await self._pooled.__aenter__()
            return conn
        return self._executor

    async def __aexit__(self, *exc: object) -> None:
        if self._pooled is not None:
            await self._pooled.__aexit__(*exc)


__all__ = ["MessageStore", "WorkerError"]


class _Given:
    """The caller's connection, as an async context manager that leaves it open."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def __aenter__(self) -> Connection:
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        return None
