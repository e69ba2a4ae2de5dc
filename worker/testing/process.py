"""Testing a process manager in memory: events in; instances, commands and deadlines out.

``run = await given_process(Fulfillment, in_stream("order-1", OrderPlaced(...)), ...)`` runs
the process manager with the engine's own consumers on the in-memory backend (``project``), on
a clock that stands still, one ``in_stream`` list after the other. ``run.instance("1")`` is
the instance's state, ``run.commands`` the messages its handlers wrote,
``run.deadlines.pending()`` what it scheduled; ``await run.advance(30)`` moves the clock and
delivers what fell due; ``await run.then(...)`` gives more events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker.engine.steps import ProcessStats, ProcessSteps, restore
from worker.errors import RegistrationError
from worker.model.event import BaseEvent
from worker.store.stream_name import category
from worker.testing.deadlines import FakeClock, MemoryDeadlines
from worker.testing.harness import project

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import timedelta

    from worker.engine.process import Process, ProcessManager
    from worker.engine.subscriber import Subscriptions
    from worker.testing.harness import Projected, StreamEvent
    from worker.testing.message_store import MemoryMessage


@dataclass
class ProcessRun:
    """A process manager's run in memory, to look at and carry on."""

    projected: Projected
    given: set[int]  # global positions of the given events
    earlier: ProcessStats = field(default_factory=ProcessStats)  # of the runs before this one

    @property
    def process(self) -> Process:
        process: Process = self.projected.subscriber.process
        return process

    @property
    def clock(self) -> FakeClock:
        return self.deadlines.clock

    @property
    def deadlines(self) -> MemoryDeadlines:
        """The deadlines kept (``pending()``, ``fired()``, ``cancelled()``)."""
        return self.projected.deadlines

    def instance(self, process_id: str) -> ProcessManager | None:
        """The instance ``process_id`` as stored (``None``: none was started)."""
        stream = self.process.stream_name(process_id)
        messages = [m for m in self.transitions() if m.stream_name == stream]
        return restore(self.process, process_id, list(messages)) if messages else None  # type: ignore[arg-type]

    def transitions(self) -> list[MemoryMessage]:
        """Every instance's transitions, in global order."""
        return self.projected.store.messages(self.process.category)

    @property
    def commands(self) -> list[MemoryMessage]:
        """Messages the handlers wrote (but the transitions), in global order."""
        own = self.process.category
        return [
            m
            for m in self.projected.store.messages()
            if m.global_position not in self.given and category(m.stream_name) != own
        ]

    @property
    def stats(self) -> ProcessStats:
        """What the consumers did to instances, summed over every run."""
        total = ProcessStats(**vars(self.earlier))
        for steps in self.projected.instances.values():
            if isinstance(steps, ProcessSteps):
                for name, value in vars(steps.stats).items():
                    setattr(total, name, getattr(total, name) + value)
        return total

    async def then(self, *events: Iterable[StreamEvent]) -> ProcessRun:
        """Give more events (``in_stream(...)`` lists) and run again."""
        for stream_events in events:
            for stream_name, message in stream_events:
                new = message.to_message() if isinstance(message, BaseEvent) else message
                await self.projected.store.write(stream_name, new)
                self.given.add(self.projected.store.messages()[-1].global_position)
        return await self._again()

    async def advance(self, seconds: float | timedelta) -> ProcessRun:
        """Move the clock on, and deliver the deadlines that fell due."""
        self.clock.advance(seconds)
        return await self._again()

    async def _again(self) -> ProcessRun:
        self.earlier = self.stats
        self.projected = await project(self.projected.subscriber, after=self.projected)
        return self


async def given_process(
    process_manager: type[Any],
    *events: Iterable[StreamEvent],
    domain: Subscriptions | None = None,
    clock: FakeClock | None = None,
    **options: Any,
) -> ProcessRun:
    """Run ``process_manager`` (registered with ``@domain.process_manager``) over ``events``
    in memory: each ``in_stream(...)`` list is written and handled before the next, in the
    order given (as a process sees a reply only after its command); ``options`` go to
    ``project``."""
    described = _registered(process_manager, domain)
    first, *rest = events or ([],)
    given = list(first)
    deadlines = MemoryDeadlines(clock or FakeClock())
    projected = await project(described, given, deadlines=deadlines, **options)
    written = projected.store.messages()[: len(given)]
    run = ProcessRun(projected, {m.global_position for m in written})
    for more in rest:
        await run.then(more)
    return run


def _registered(cls: type[Any], domain: Subscriptions | None) -> Any:
    from worker.engine.process import registered_process

    if domain is None:
        return registered_process(cls)
    for found in domain.subscribers:
        if found.cls is cls and found.process is not None:
            return found
    raise RegistrationError(f"{cls.__qualname__} is no process manager of this domain")
