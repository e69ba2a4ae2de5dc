"""What a handler gets besides the event: the message, the batch's connection, and ``write``."""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from worker.errors import NotAwaitedError, ProcessError
from worker.model.event import BaseEvent
from worker.read.handed import record
from worker.read.model import ReadModel
from worker.read.table import Table
from worker.store import queries as store_queries
from worker.store.message import NewMessage
from worker.store.metadata import correlation_of, follow

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, MutableMapping
    from datetime import timedelta

    from worker.engine.deadlines import Deadline
    from worker.engine.declared import Declared
    from worker.engine.schedule import Schedule
    from worker.read.handed import Unawaited
    from worker.read.table import TableFactory
    from worker.store.message import Message
    from worker.store.message_store import MessageStore
    from worker.store.types import Connection

M = TypeVar("M", bound=ReadModel)
_IDS = uuid.UUID("6f1f7e0e-3c55-4a57-9a43-3d1f4f2a9b10")


class Context:
    """Per-batch context; ``message`` is the message being handled.

    ``conn`` is inside the batch's transaction: read-model writes made on it commit together
    with the consumer's new position, exactly once. ``write`` emits messages in that same
    transaction, with causation/correlation metadata following the handled message and an id
    derived from (consumer, handled message, n), so a redelivery can never write it twice.
    ``unawaited`` holds the writes made and not awaited yet: a handler that returns with one
    there fails its message (``not_awaited``) rather than lose the write.
    """

    __slots__ = (
        "_declared",
        "_emitted",
        "_emitted_for",
        "_followed",
        "_position",
        "_store",
        "_table_factory",
        "_tables",
        "conn",
        "consumer",
        "exact",
        "generation",
        "message",
        "schedule_to",
        "unawaited",
    )

    def __init__(
        self,
        consumer: str,
        conn: Connection,
        store: MessageStore,
        *,
        generation: int = 1,
        exact: bool = False,
        tables: TableFactory = Table,
        declared: Declared | None = None,
    ) -> None:
        self.consumer = consumer
        self._declared = declared  # the read models ``table`` gives (None: any)
        self.conn = conn
        self._store = store
        self.message: Message
        self._emitted = 0
        self._emitted_for: Message | None = None
        self._followed: dict[str, Any] = {}
        self.unawaited: Unawaited = {}
        self._tables: dict[type[ReadModel], Table] = {}
        self._table_factory = tables
        self.generation = generation
        self.exact = exact
        self._position = self._global_position
        self.schedule_to: Schedule | None = None  # a process manager's step

    def partition(self, conn: Connection) -> Context:
        """A context for one partition of a concurrent batch (``concurrency=n``): a message and
        emitted-message count of its own over the batch's read-model tables, on ``conn`` (the
        batch's connection, shared one statement at a time)."""
        view = Context(
            self.consumer,
            conn,
            self._store,
            generation=self.generation,
            exact=self.exact,
            tables=self._table_factory,
            declared=self._declared,
        )
        view._tables = self._tables
        view._position = _task_position  # the tables are shared: whose change is it?
        return view

    def table(self, model: type[M]) -> Table:
        """The batch's unit of work on a read model: changes are flushed before the commit."""
        table = self._tables.get(model)
        if table is None:
            if self._declared is not None:
                self._declared.check(model)
            table = self._tables[model] = self._table_factory(
                model, self.generation, self.conn, self._position, exact=self.exact
            )
        return table

    def touched(self) -> bool:
        """Whether a handler of the batch took a read model's unit of work (``table``)."""
        return bool(self._tables)

    def _global_position(self) -> int:
        position: int = self.message[4]  # (global_position, without the property's call)
        return position

    async def flush(self) -> None:
        """Write the batch's read-model changes (the consumer calls this before committing)."""
        for table in self._tables.values():
            await table.flush()

    @property
    def idempotency_key(self) -> str:
        """A stable key for outside side effects: the handled message's id."""
        return self.message.id

    @property
    def log(self) -> Any:
        """A logger bound to this consumer and message."""
        m = self.message
        return structlog.get_logger("worker.handler").bind(
            consumer=self.consumer,
            stream_name=m.stream_name,
            position=m.position,
            global_position=m.global_position,
            type=m.type,
        )

    def write(
        self,
        stream_name: str,
        event: BaseEvent | NewMessage,
        *,
        expected_version: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Coroutine[Any, Any, int]:
        """Write a message caused by the one being handled, in the batch's transaction; to be
        awaited before the handler returns (else the message fails: ``not_awaited``)."""
        return record(
            self.unawaited, "ctx.write", self._write, stream_name, event, expected_version, metadata
        )

    def schedule(
        self, *, after: timedelta | float, message: BaseEvent, name: str | None = None
    ) -> Deadline:
        """A process manager's deadline: ``message`` delivered to this instance ``after``
        (seconds, or a timedelta) unless a later step cancels it by ``name`` (default: the
        message's type). Kept in the batch's transaction with the step."""
        return self._schedule("ctx.schedule").add(after, message, name)

    def cancel(self, name: str | BaseEvent | type[BaseEvent] | None = None) -> None:
        """Cancel this process instance's pending deadlines named ``name`` (an event or its
        class: its type name; ``None``: all), with the step."""
        self._schedule("ctx.cancel").cancel(name)

    def _schedule(self, what: str) -> Schedule:
        if self.schedule_to is None:
            raise ProcessError(f"{what} is for a process manager's handlers only")
        return self.schedule_to

    def not_awaited(self, handler: Callable[..., Any]) -> NotAwaitedError:
        """The error of ``handler``, which returned with writes (or reads) not awaited
        (dropped: they never run)."""
        labels = [label for label, _ in self.unawaited.values()]
        self.drop_unawaited()
        writes = labels.count("ctx.write")
        missed = [f"ctx.write was not awaited ({writes} message(s) not written)"] if writes else []
        missed += [
            f"{label} was not awaited" for label in dict.fromkeys(labels) if label != "ctx.write"
        ]
        return NotAwaitedError(
            f"{handler_name(handler)}: {'; '.join(missed)}: await it, in a handler declared "
            "async def"
        )

    def drop_unawaited(self) -> None:
        """Close the writes no one awaited (a failed handler's): they never run."""
        for _, coroutine in self.unawaited.values():
            coroutine.close()
        self.unawaited.clear()

    async def _write(
        self,
        stream_name: str,
        event: BaseEvent | NewMessage,
        expected_version: int | None,
        metadata: dict[str, Any] | None,
    ) -> int:
        if self._emitted_for is not self.message:  # the first message emitted for this one
            self._emitted_for, self._emitted = self.message, 0
            self._followed = follow(self.message)
        self._emitted += 1
        meta = {**self._followed, **(metadata or {})}
        ident = str(uuid.uuid5(_IDS, f"{self.consumer}/{self.message.id}/{self._emitted}"))
        if self.exact:
            # Applied again after a reset: the message may exist from the first time.
            existing: int | None = await self.conn.fetchval(store_queries.POSITION_OF_ID, ident)
            if existing is not None:
                return existing
        if isinstance(event, BaseEvent):
            new = event.to_message(
                meta,
                stream_name=stream_name,
                cause=self.message,
                id=ident,
                position=None if expected_version is None else expected_version + 1,
                expected_version=expected_version,
            )
        else:
            new = NewMessage(event.type, event.data, {**meta, **(event.metadata or {})}, ident)
        return await self._store.write(
            stream_name, new, expected_version=expected_version, conn=self.conn
        )


def handler_name(handler: Callable[..., Any]) -> str:
    """``Class.method`` of a bound handler method (else its qualified name)."""
    owner = getattr(handler, "__self__", None)
    name = getattr(handler, "__name__", None)
    if owner is None or name is None:
        return str(getattr(handler, "__qualname__", repr(handler)))
    cls = owner if isinstance(owner, type) else type(owner)
    return f"{cls.__name__}.{name}"


def _task_position() -> int:
    """The global position of the message the current task handles (concurrent batches)."""
    position: int = current_context.get().message.global_position
    return position


# The handler context of the batch being applied in this task. A log processor reads the
# current message from it only when something is logged, so binding costs nothing per message.
current_context: ContextVar[Any] = ContextVar("worker_current_context", default=None)


def add_message_context(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add consumer, stream, positions, type and correlation of the message being handled, if
    any."""
    ctx = current_context.get()
    message = getattr(ctx, "message", None) if ctx is not None else None
    if message is not None:
        event.setdefault("consumer", ctx.consumer)
        event.setdefault("stream_name", message.stream_name)
        event.setdefault("position", message.position)
        event.setdefault("global_position", message.global_position)
        event.setdefault("type", message.type)
        event.setdefault("correlation", correlation_of(message))
    return event
