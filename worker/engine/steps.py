"""A process manager's steps: what its consumer runs for each event (``ProcessSteps``).

One step: find the instance the event correlates to (its stream, read in the batch's
transaction, so the batch's earlier steps are seen), or start one if the handler may; run the
handler on it; write its transition with the instance's expected version, then the deadlines it
cancelled and scheduled, all in the batch's transaction. An event that correlates to no
instance and may not start one is skipped; one that reaches an ended instance is ignored; one
the instance has handled before (its transition is in the stream: a reset) is passed over;
each is counted (``ProcessStats``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from worker.engine.process import transition_id
from worker.engine.schedule import Schedule
from worker.errors import ExpectedVersionError, ProcessConflictError

if TYPE_CHECKING:
    from worker.engine.backend import Backend
    from worker.engine.context import Context
    from worker.engine.deadlines import Deadlines
    from worker.engine.process import Process, ProcessManager
    from worker.engine.subscriber import StepRule, Subscriber
    from worker.model.event import BaseEvent
    from worker.store.message import Message
    from worker.store.message_store import MessageStore
    from worker.store.types import Connection

_PAGE = 1000


@dataclass
class ProcessStats:
    """What a process manager's consumer did to instances, for the metrics."""

    started: int = 0
    ended: int = 0
    steps: int = 0
    skipped: int = 0  # correlated to no instance, and may not start one
    ignored: int = 0  # reached an ended instance
    repeated: int = 0  # handled by the instance before (after a reset)
    scheduled: int = 0
    delivered: int = 0  # deadlines delivered
    failed_deliveries: int = 0


class ProcessSteps:
    """The object a process manager's consumer calls: one bound step per handler method."""

    def __init__(self, subscriber: Subscriber, store: MessageStore, deadlines: Deadlines) -> None:
        self.process: Process = subscriber.process
        self.name = subscriber.name
        self.store, self.deadlines = store, deadlines
        self.stats = ProcessStats()
        self._methods = frozenset(route.method_name for route in subscriber.routes)
        # The context whose transaction holds the category's lock (held here, so that no
        # later context can be taken for it).
        self._locked: Context | None = None

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_") or method not in self._methods:
            raise AttributeError(method)
        return partial(self.step, method)

    async def step(self, method: str, event: BaseEvent, ctx: Context) -> None:
        """Handle ``event`` with the instance's ``method`` (see the module doc)."""
        process = self.process
        rule = process.rule(method, type(event))
        process_id = process.correlation(event, rule)
        # Every step of the process takes its category's lock before reading: no other step
        # changes the instance in between (no conflict), and every transaction writing the
        # category takes this lock before any other category's (no deadlock between them).
        if self._locked is not ctx:
            await self.store.lock_category(process.stream_name(process_id), ctx.conn)
            self._locked = ctx
        instance = await self.load(process_id, ctx.conn)
        tid = transition_id(ctx.consumer, ctx.message)
        if instance is None:
            if not rule.start:
                self.stats.skipped += 1
                return
            instance = self.new(process_id)
        elif tid in instance._handled:
            self.stats.repeated += 1
            return
        elif instance.ended:
            self.stats.ignored += 1
            return
        schedule = Schedule(
            process, self.name, ctx.consumer, process_id, ctx.message, self.deadlines.now()
        )
        await self._run(instance, method, event, ctx, schedule)
        await self._store(instance, method, rule, ctx, tid, schedule)

    async def _run(
        self, instance: ProcessManager, method: str, event: BaseEvent, ctx: Context, s: Schedule
    ) -> None:
        ctx.schedule_to = s
        try:
            returned = getattr(instance, method)(event, ctx)
            if inspect.isawaitable(returned):
                await returned
        finally:
            ctx.schedule_to = None

    async def _store(
        self,
        instance: ProcessManager,
        method: str,
        rule: StepRule,
        ctx: Context,
        tid: str,
        schedule: Schedule,
    ) -> None:
        """Write the instance's transition, then its deadlines' changes."""
        if rule.end:
            instance.mark_as_complete()
        started = instance.version == -1
        await self._transition(instance, method, ctx, tid)
        conn = ctx.conn
        stream = self.process.stream_name(instance.process_id)
        for name in schedule.cancelled:
            await self.deadlines.cancel(conn, stream, name)
        for deadline in schedule.scheduled:
            await self.deadlines.schedule(conn, deadline)
        if instance.ended:
            await self.deadlines.cancel(conn, stream, None)
        stats = self.stats
        stats.steps += 1
        stats.started += started
        stats.ended += instance.ended
        stats.scheduled += len(schedule.scheduled)

    async def _transition(
        self, instance: ProcessManager, method: str, ctx: Context, tid: str
    ) -> None:
        transition = self.process.transition(
            state=instance.model_dump(mode="json"),
            handler_name=method,
            is_complete=instance.ended,
        )
        stream = self.process.stream_name(instance.process_id)
        expected = instance.version
        new = transition.to_message(
            stream_name=stream,
            cause=ctx.message,
            id=tid,
            position=expected + 1,
            expected_version=expected,
        )
        try:
            await self.store.write(stream, new, expected_version=expected, conn=ctx.conn)
        except ExpectedVersionError as error:
            raise ProcessConflictError(stream, expected, error.actual) from error

    def new(self, process_id: str) -> ProcessManager:
        """A new instance (its fields' defaults)."""
        instance = self.process.cls()
        instance._process_id = process_id
        return instance

    async def load(self, process_id: str, conn: Connection | None = None) -> ProcessManager | None:
        """The instance ``process_id`` as its stream says (``None``: it has none)."""
        stream = self.process.stream_name(process_id)
        messages = await self._read(stream, conn)
        if not messages:
            return None
        return restore(self.process, process_id, messages)

    async def _read(self, stream: str, conn: Connection | None) -> list[Message]:
        messages: list[Message] = []
        while True:
            page = await self.store.read_stream(stream, len(messages), _PAGE, conn=conn)
            messages.extend(page)
            if len(page) < _PAGE:
                return messages


def restore(process: Process, process_id: str, messages: list[Message]) -> ProcessManager:
    """An instance from its stream: the last transition's state (each holds the whole state)."""
    last = process.transition.model_validate_json(messages[-1].data_json)
    instance = process.cls.model_validate(last.state)  # type: ignore[attr-defined]
    instance._process_id = process_id
    instance._version = messages[-1].position
    instance._ended = bool(last.is_complete)  # type: ignore[attr-defined]
    instance._handled = frozenset(m.id for m in messages)
    return instance


def instance_of(subscriber: Subscriber, backend: Backend) -> object:
    """What a consumer of ``subscriber`` calls: a new instance of its class, or a process
    manager's steps."""
    if subscriber.process is None:
        return subscriber.cls()
    return ProcessSteps(subscriber, backend.store, backend.deadlines)
