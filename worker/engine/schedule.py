"""What one step of a process manager schedules and cancels (``ctx.schedule``, ``ctx.cancel``).

The step's handler says it; the step writes it in the batch's transaction once the handler has
returned (cancellations first, then the new deadlines), with the instance's transition.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from worker.engine.deadlines import Deadline, message_json
from worker.errors import ProcessError
from worker.model.event import BaseEvent
from worker.store.metadata import follow

if TYPE_CHECKING:
    from datetime import datetime

    from worker.engine.process import Process
    from worker.store.message import Message

_DEADLINE_IDS = uuid.UUID("9d3f1a57-0c2b-4e8e-b1f6-5a4c2d7e8f90")


class Schedule:
    """The deadlines one step scheduled and the names it cancelled."""

    def __init__(
        self,
        process: Process,
        name: str,
        consumer: str,
        process_id: str,
        handled: Message,
        now: datetime,
    ) -> None:
        self._process, self._name, self._consumer, self._now = process, name, consumer, now
        self.process_id, self._handled = process_id, handled
        self.scheduled: list[Deadline] = []
        self.cancelled: list[str | None] = []

    def add(self, after: timedelta | float, message: BaseEvent, name: str | None) -> Deadline:
        """A deadline: ``message`` due ``after`` (seconds, or a timedelta) from the step's
        time."""
        delay = after if isinstance(after, timedelta) else timedelta(seconds=after)
        if not isinstance(message, BaseEvent):
            raise ProcessError(f"ctx.schedule takes an event to deliver, got {message!r}")
        if delay < timedelta(0):
            raise ProcessError(f"ctx.schedule: after must not be negative, got {after!r}")
        self._check_handled(message)
        n = len(self.scheduled) + 1
        ident = uuid.uuid5(_DEADLINE_IDS, f"{self._consumer}/{self._handled.id}/{n}")
        deadline = Deadline(
            str(ident),
            self._name,
            self._consumer,
            self._process.stream_name(self.process_id),
            name or type(message).type_name(),
            self._now + delay,
            type(message).type_name(),
            message_json(message.model_dump(mode="json")),
            message_json(follow(self._handled)),
        )
        self.scheduled.append(deadline)
        return deadline

    def cancel(self, name: str | BaseEvent | type[BaseEvent] | None) -> None:
        """Cancel the instance's pending deadlines named ``name`` (an event class: its type
        name; ``None``: every one)."""
        if isinstance(name, BaseEvent):
            name = type(name).type_name()
        elif isinstance(name, type):
            name = name.type_name()
        self.cancelled.append(name)
        self.scheduled = [d for d in self.scheduled if name is not None and d.name != name]

    def _check_handled(self, message: BaseEvent) -> None:
        """A deadline's message must go to a handler of this process manager, and to this
        instance."""
        rule = self._process.handles(type(message))
        who = self._process.cls.__name__
        if rule is None:
            raise ProcessError(
                f"ctx.schedule: {who} has no handler of {type(message).__name__}, so its "
                "deadline could never be delivered: add @handle(..., correlate=...) for it"
            )
        target = self._process.correlation(message, rule)
        if target != self.process_id:
            raise ProcessError(
                f"ctx.schedule: {type(message).__name__}.{rule.correlate} is {target!r}, but "
                f"the deadline is of instance {self.process_id!r}"
            )
