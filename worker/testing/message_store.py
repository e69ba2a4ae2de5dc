"""``MemoryMessageStore``: MessageDB's semantics in memory, for tests.

The same methods as ``worker.store.message_store.MessageStore``, with the same rules: stream
versions and ``ExpectedVersionError`` (``-1``: no stream yet), atomic batches, global positions
(a sequence: a rolled-back write leaves a gap, as PostgreSQL's does), category reads from a
position with MessageDB's correlation filter and consumer groups (its ``hash_64`` of the
stream's cardinal id), and the same name checks. The contract suite
(``tests/contracts/test_message_store.py``) runs one set of tests against both.

Messages it returns are ``MemoryMessage`` tuples with ``Message``'s fields and column order.
Data and metadata are kept as JSON text like MessageDB's; the text's formatting may differ from
PostgreSQL's ``jsonb`` output, never the decoded value.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import uuid
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast

import asyncpg
import orjson

from worker.errors import ExpectedVersionError
from worker.store.message import MessageFields
from worker.store.message_store import _check_batch_size, _check_group
from worker.store.metadata import CORRELATION_STREAM_NAME
from worker.store.stream_name import (
    cardinal_id,
    category,
    check_category,
    check_stream_name,
)
from worker.store.tracing import stamp
from worker.testing.connection import MemoryConnection, failed, joined, undo_on

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from typing import Self

    from worker.store.message import Message, NewMessage
    from worker.store.types import Connection

_position = itemgetter(3)
_global_position = itemgetter(4)


class MemoryMessage(MessageFields, tuple[Any, ...]):
    """A stored message in memory: a tuple in MessageDB's column order (id, stream_name, type,
    position, global_position, data JSON, metadata JSON, time) with ``Message``'s fields."""

    __slots__ = ()

    def __new__(
        cls,
        id: str,
        stream_name: str,
        type: str,
        position: int,
        global_position: int,
        data: str | None,
        metadata: str | None,
        time: datetime,
    ) -> Self:
        return tuple.__new__(
            cls, (id, stream_name, type, position, global_position, data, metadata, time)
        )

    def as_message(self) -> Message:
        """This message, typed as the engine's ``Message`` (it reads both alike)."""
        return cast("Message", self)


def hash_64(value: str) -> int:
    """MessageDB's ``hash_64``: the first 64 bits of the value's MD5, as a signed bigint."""
    bits = int(hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()[:16], 16)
    return bits - (1 << 64) if bits >= 1 << 63 else bits


def group_member(stream_name: str, size: int) -> int | None:
    """The consumer-group member (of ``size``) that MessageDB gives a stream: by the hash of
    its cardinal id; ``None`` for a name without an id."""
    ident = cardinal_id(stream_name)
    return None if ident is None else abs(hash_64(ident)) % size


def _handled_before(message: MemoryMessage, from_size: int, positions: Sequence[int]) -> bool:
    """Whether the stream's owner before a resize had handled the message (a stream without an
    id had an owner only when the size before was 1, the plain consumer)."""
    owner = 0 if from_size == 1 else group_member(message[1], from_size)
    return owner is not None and message[4] <= positions[owner]


def _correlation_category(metadata: str | None) -> str | None:
    """``category(metadata->>'correlationStreamName')``, as MessageDB's filter computes it."""
    if metadata is None:
        return None
    value = orjson.loads(metadata)
    if not isinstance(value, dict):
        return None
    stream = value.get(CORRELATION_STREAM_NAME)
    if stream is None:
        return None
    text = stream if isinstance(stream, str) else orjson.dumps(stream).decode()
    return category(text)


class MemoryMessageStore:
    """MessageDB in memory (see the module doc). Every method takes ``conn=`` where
    ``MessageStore``'s does: a transaction of ``MemoryTransactions`` (or ``transaction()``),
    whose rollback removes what was written in it."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._messages: list[MemoryMessage] = []  # in global order
        self._streams: dict[str, list[MemoryMessage]] = {}
        self._categories: dict[str, list[MemoryMessage]] = {}
        self._ids: set[str] = set()
        self._next_global_position = 1
        self._clock = clock or (lambda: datetime.now(UTC))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    # -- what a test asserts -----------------------------------------------------------------

    def __len__(self) -> int:
        """How many messages it holds."""
        return len(self._messages)

    def messages(self, category_name: str | None = None) -> list[MemoryMessage]:
        """Every message (of a category, when given), in global order."""
        if category_name is None:
            return list(self._messages)
        return list(self._categories.get(category_name, ()))

    def streams(self) -> list[str]:
        """The streams written to, in the order of their first message."""
        return list(self._streams)

    # -- writing -----------------------------------------------------------------------------

    async def write(
        self,
        stream_name: str,
        message: NewMessage,
        *,
        expected_version: int | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Write one message; return its stream position (see ``MessageStore.write``)."""
        check_stream_name(stream_name)
        joined(conn)
        return self._write(stream_name, message, expected_version, conn)

    async def write_batch(
        self,
        stream_name: str,
        messages: Sequence[NewMessage],
        *,
        expected_version: int | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Write several messages to one stream atomically (all or none); return the last
        position (see ``MessageStore.write_batch``)."""
        check_stream_name(stream_name)
        if not messages:
            raise ValueError(f"write_batch to {stream_name!r} needs at least one message")
        if conn is not None:
            joined(conn)
            return self._write_all(stream_name, messages, expected_version, conn)
        own = MemoryConnection()
        try:
            last = self._write_all(stream_name, messages, expected_version, own)
        except BaseException:
            own.rollback()
            raise
        own.commit()
        return last

    def _write_all(
        self,
        stream_name: str,
        messages: Sequence[NewMessage],
        expected_version: int | None,
        conn: object,
    ) -> int:
        first = self._write(stream_name, messages[0], expected_version, conn)
        for i, message in enumerate(messages[1:]):
            self._write(stream_name, message, first + i, conn)
        return first + len(messages) - 1

    def _write(
        self, stream_name: str, message: NewMessage, expected_version: int | None, conn: object
    ) -> int:
        version = self._version(stream_name)
        if expected_version is not None and expected_version != version:
            raise failed(conn, ExpectedVersionError(stream_name, expected_version, version))
        try:
            ident = str(uuid.UUID(message.id))
        except (ValueError, TypeError, AttributeError):
            raise failed(
                conn,
                asyncpg.InvalidTextRepresentationError(
                    f'invalid input syntax for type uuid: "{message.id}"'
                ),
            ) from None
        if ident in self._ids:
            raise failed(
                conn,
                asyncpg.UniqueViolationError(
                    'duplicate key value violates unique constraint "messages_id"'
                ),
            )
        metadata = stamp(message.metadata)  # the trace context, as ``MessageStore`` writes it
        row = MemoryMessage(
            ident,
            stream_name,
            message.type,
            version + 1,
            self._next_global_position,
            None if message.data is None else orjson.dumps(message.data).decode(),
            None if metadata is None else orjson.dumps(metadata).decode(),
            self._clock(),
        )
        self._next_global_position += 1  # a sequence: never given back
        self._messages.append(row)
        self._streams.setdefault(stream_name, []).append(row)
        self._categories.setdefault(category(stream_name), []).append(row)
        self._ids.add(ident)
        undo_on(conn, lambda: self._remove(row))
        return version + 1

    def _remove(self, row: MemoryMessage) -> None:
        for found in (
            self._messages,
            self._streams[row.stream_name],
            self._categories[category(row.stream_name)],
        ):
            if found[-1] is row:
                found.pop()
            else:
                found.remove(row)
        if not self._streams[row.stream_name]:
            del self._streams[row.stream_name]
        self._ids.discard(row[0])

    def _version(self, stream_name: str) -> int:
        stream = self._streams.get(stream_name)
        return stream[-1][3] if stream else -1

    async def lock_category(self, stream_name: str, conn: Connection) -> None:
        """MessageDB's category lock: nothing to wait for in memory (one writer at a time)."""
        check_stream_name(stream_name)
        joined(conn)

    # -- reading -----------------------------------------------------------------------------

    async def read_stream(
        self,
        stream_name: str,
        position: int = 0,
        batch_size: int = 1000,
        *,
        conn: Connection | None = None,
    ) -> list[MemoryMessage]:
        """Up to ``batch_size`` messages of a stream from ``position``, in stream order."""
        check_stream_name(stream_name)
        _check_batch_size(batch_size)
        joined(conn)
        stream = self._streams.get(stream_name, [])
        start = bisect.bisect_left(stream, position, key=_position)
        return stream[start : start + batch_size]

    async def iter_stream(
        self, stream_name: str, position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[MemoryMessage]:
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
    ) -> list[MemoryMessage]:
        """Up to ``batch_size`` messages of a category from global ``position``, in global
        order, filtered as ``get_category_messages`` filters them."""
        check_category(category)
        _check_batch_size(batch_size)
        _check_group(consumer_group_member, consumer_group_size)
        if correlation is not None:
            check_category(correlation)
        joined(conn)
        messages = self._categories.get(category, [])
        start = bisect.bisect_left(messages, position, key=_global_position)
        found: list[MemoryMessage] = []
        for message in messages[start:]:
            if correlation is not None and _correlation_category(message[6]) != correlation:
                continue
            if (
                consumer_group_size is not None
                and group_member(message[1], consumer_group_size) != consumer_group_member
            ):
                continue
            if handed is not None and _handled_before(message, *handed):
                continue
            found.append(message)
            if len(found) == batch_size:
                break
        return found

    async def last_message(self, stream_name: str, type: str | None = None) -> MemoryMessage | None:
        """The newest message of a stream (of ``type``, when given), or ``None``."""
        check_stream_name(stream_name)
        for message in reversed(self._streams.get(stream_name, [])):
            if type is None or message.type == type:
                return message
        return None

    async def message_at(self, global_position: int) -> MemoryMessage | None:
        """The message at ``global_position``, or ``None`` when there is none."""
        index = bisect.bisect_left(self._messages, global_position, key=_global_position)
        if index < len(self._messages) and self._messages[index][4] == global_position:
            return self._messages[index]
        return None

    async def stream_version(
        self, stream_name: str, *, conn: Connection | None = None
    ) -> int | None:
        """The position of the stream's last message, or ``None`` if the stream is empty."""
        check_stream_name(stream_name)
        joined(conn)
        version = self._version(stream_name)
        return None if version < 0 else version

    async def category_head(self, category: str, *, conn: Connection | None = None) -> int | None:
        """The global position of the newest message in a category, or ``None`` if empty."""
        check_category(category)
        joined(conn)
        messages = self._categories.get(category)
        return messages[-1][4] if messages else None

    @contextlib.asynccontextmanager
    async def transaction(self, conn: Connection | None = None) -> AsyncIterator[Connection]:
        """An in-memory transaction: ``conn``'s (a savepoint in it), or one of its own."""
        memory = joined(conn)
        if memory is not None:
            async with memory.transaction():
                yield cast("Connection", memory)
            return
        own = MemoryConnection()
        try:
            yield cast("Connection", own)
        except BaseException:
            own.rollback()
            raise
        if own.aborted:
            own.rollback()
        else:
            own.commit()

    async def lag(self, category: str, position: int) -> tuple[int, datetime | None]:
        """How many messages of ``category`` lie after ``position``, and the oldest one's time."""
        check_category(category)
        messages = self._categories.get(category, [])
        later = messages[bisect.bisect_right(messages, position, key=_global_position) :]
        return len(later), min((m.time for m in later), default=None)
