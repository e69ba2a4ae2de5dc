"""The consumer's lifecycle as data: one pure transition function and the states it reports."""

from __future__ import annotations

import pytest

from worker.engine.lifecycle import Life, Mode, Step, transition
from worker.engine.state import ConsumerState

LIVE = Life(Mode.LIVE)
CAUGHT_UP = Life(Mode.CAUGHT_UP)

# (from, step) -> (mode, state reported)
TABLE = [
    (Life(), Step.WAIT, Mode.WAITING, ConsumerState.WAITING),
    (Life(Mode.WAITING), Step.START, Mode.LIVE, ConsumerState.RUNNING),
    (Life(Mode.WAITING, ahead=True), Step.START, Mode.LIVE, ConsumerState.RUNNING),
    (Life(Mode.WAITING, refilling=True), Step.START, Mode.LIVE, ConsumerState.REBUILDING),
    (LIVE, Step.REFILL, Mode.LIVE, ConsumerState.REBUILDING),
    (Life(Mode.LIVE, refilling=True), Step.REFILLED, Mode.LIVE, ConsumerState.RUNNING),
    (LIVE, Step.CAUGHT_UP, Mode.CAUGHT_UP, ConsumerState.CAUGHT_UP),
    (CAUGHT_UP, Step.WOKE, Mode.LIVE, ConsumerState.RUNNING),
    (CAUGHT_UP, Step.READ, Mode.LIVE, ConsumerState.RUNNING),
    (CAUGHT_UP, Step.BEYOND_HEAD, Mode.CAUGHT_UP, ConsumerState.AHEAD),
    (Life(Mode.CAUGHT_UP, ahead=True), Step.WOKE, Mode.LIVE, ConsumerState.AHEAD),
    (Life(Mode.LIVE, ahead=True), Step.READ, Mode.LIVE, ConsumerState.RUNNING),
    (Life(Mode.CAUGHT_UP, ahead=True), Step.AT_HEAD, Mode.CAUGHT_UP, ConsumerState.CAUGHT_UP),
    (LIVE, Step.PAUSE, Mode.LIVE, ConsumerState.PAUSED),
    (Life(Mode.CAUGHT_UP, paused=True), Step.RESUME, Mode.LIVE, ConsumerState.RUNNING),
    (
        Life(Mode.LIVE, paused=True, refilling=True),
        Step.RESUME,
        Mode.LIVE,
        ConsumerState.REBUILDING,
    ),
    (LIVE, Step.HALT, Mode.STOPPED, ConsumerState.STOPPED),
    (LIVE, Step.END, Mode.DONE, ConsumerState.DONE),
    (Life(Mode.WAITING), Step.END, Mode.DONE, ConsumerState.DONE),
    (Life(Mode.LIVE, paused=True), Step.END, Mode.LIVE, ConsumerState.PAUSED),
    (Life(), Step.REBUILD_DUE, Mode.REBUILD_DUE, ConsumerState.REBUILD_DUE),
    (Life(Mode.DONE), Step.WAIT, Mode.WAITING, ConsumerState.WAITING),
]


@pytest.mark.parametrize(("life", "step", "mode", "state"), TABLE)
def test_each_step_leads_where_the_table_says(
    life: Life, step: Step, mode: Mode, state: ConsumerState
) -> None:
    """A step moves a consumer to the mode, and the reported state, of the table."""
    after = transition(life, step)
    assert (after.mode, after.state) == (mode, state)


@pytest.mark.parametrize("step", list(Step))
def test_a_halted_consumer_stays_halted_whatever_happens(step: Step) -> None:
    """Once halted (the ``stop`` action), nothing moves a consumer: it reports ``stopped``."""
    halted = Life(Mode.STOPPED)
    assert transition(halted, step) == halted


def test_every_step_of_a_holding_consumer_is_in_the_table() -> None:
    """The table covers every step (so a new step cannot go untested)."""
    assert {step for _, step, _, _ in TABLE} == set(Step)


def test_a_pause_is_reported_before_a_position_beyond_the_head_and_a_refill() -> None:
    """Paused, ahead and refilling together report ``paused``; ahead and refilling, ``ahead``."""
    everything = Life(Mode.LIVE, paused=True, refilling=True, ahead=True)
    assert everything.state == ConsumerState.PAUSED
    assert transition(everything, Step.RESUME).state == ConsumerState.AHEAD
