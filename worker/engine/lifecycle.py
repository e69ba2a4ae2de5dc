"""A consumer's lifecycle as data: a mode, three facts beside it, and one pure transition.

The consumer tells what happened (a ``Step``); ``transition`` says where that leaves it, and
``Life.state`` the state it reports (``ConsumerState``). Nothing here performs anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from worker.engine.state import ConsumerState

if TYPE_CHECKING:
    import anyio


class Mode(StrEnum):
    """What a consumer is doing."""

    STARTING = "starting"  # created, not yet looking for its lease
    WAITING = "waiting"  # looking for its lease (a standby)
    LIVE = "live"  # holding its lease, applying batches
    CAUGHT_UP = "caught_up"  # holding its lease, every message up to the head handled
    STOPPED = "stopped"  # halted on a failure (the ``stop`` action): for good
    DONE = "done"  # its run returned
    REBUILD_DUE = "rebuild_due"  # never run: its projection's tables no longer fit the code


class Step(StrEnum):
    """What happened to a consumer."""

    WAIT = "wait"  # it looks for its lease
    START = "start"  # it holds its lease and loaded its position
    READ = "read"  # it read a batch (at or past its position)
    CAUGHT_UP = "caught_up"  # it read nothing new
    WOKE = "woke"  # it was woken (or its poll interval passed) after catching up
    PAUSE = "pause"  # an operator paused it
    RESUME = "resume"  # an operator resumed it
    REFILL = "refill"  # its tables are refilled (a rebuild in place)
    REFILLED = "refilled"  # the refill caught up
    BEYOND_HEAD = "beyond_head"  # its position is beyond the category head
    AT_HEAD = "at_head"  # its position is not beyond the category head
    HALT = "halt"  # a handler kept failing and the failure action is ``stop``
    END = "end"  # its run returned
    REBUILD_DUE = "rebuild_due"  # it will not run: its projection needs a rebuild


@dataclass(frozen=True, slots=True)
class Life:
    """Where a consumer is: its mode, and whether it is paused, refilling or ahead."""

    mode: Mode = Mode.STARTING
    paused: bool = False
    refilling: bool = False
    ahead: bool = False  # its position is beyond the category head (an operator set it)

    @property
    def state(self) -> ConsumerState:
        """The state it reports (before ``disconnected``, which the lease's contact says)."""
        if self.mode not in _HOLDING:
            return ConsumerState(self.mode.value)
        if self.paused:
            return ConsumerState.PAUSED
        if self.ahead:
            return ConsumerState.AHEAD
        if self.refilling:
            return ConsumerState.REBUILDING
        return ConsumerState.RUNNING if self.mode is Mode.LIVE else ConsumerState.CAUGHT_UP


_HOLDING = frozenset({Mode.LIVE, Mode.CAUGHT_UP})
_MODES = {
    Step.WAIT: Mode.WAITING,
    Step.START: Mode.LIVE,
    Step.READ: Mode.LIVE,
    Step.WOKE: Mode.LIVE,
    Step.RESUME: Mode.LIVE,
    Step.CAUGHT_UP: Mode.CAUGHT_UP,
    Step.HALT: Mode.STOPPED,
    Step.REBUILD_DUE: Mode.REBUILD_DUE,
}
_FACTS: dict[Step, dict[str, bool]] = {
    Step.START: {"ahead": False},
    Step.READ: {"ahead": False},
    Step.PAUSE: {"paused": True},
    Step.RESUME: {"paused": False},
    Step.REFILL: {"refilling": True},
    Step.REFILLED: {"refilling": False},
    Step.BEYOND_HEAD: {"ahead": True},
    Step.AT_HEAD: {"ahead": False},
}


def transition(life: Life, step: Step) -> Life:
    """Where ``step`` leaves a consumer at ``life``. A halted consumer stays halted; one that
    ends while paused stays paused (it was not done: an operator holds it)."""
    if life.mode is Mode.STOPPED:
        return life
    if step is Step.END:
        return life if life.paused else replace(life, mode=Mode.DONE)
    return replace(life, mode=_MODES.get(step, life.mode), **_FACTS.get(step, {}))


@dataclass(frozen=True, slots=True)
class Until:
    """When a consumer's run ends: once ``stop`` is set, or (``caught_up``) once it has
    handled every message up to the head (or is paused)."""

    stop: anyio.Event
    caught_up: bool = False
