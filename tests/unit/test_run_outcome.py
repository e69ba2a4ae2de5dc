"""`worker run`'s exit code: the most severe of what the run met (1, then 4, then 3)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from worker.engine.runner import RunResult
from worker.engine.state import ConsumerState
from worker.ops import outcome


def consumer(name: str, *, parked: int = 0, state: str = "done", head: int | None = None) -> Any:
    return SimpleNamespace(name=name, parked_count=parked, state=state, head=head, paused=False)


def result(*, parked: bool = False, stopped: bool = False, due: bool = False) -> RunResult:
    consumers = [
        consumer("a:x", parked=2 if parked else 0),
        consumer("b:x", state=ConsumerState.STOPPED if stopped else ConsumerState.DONE),
    ]
    return RunResult(consumers=consumers, needs_rebuild=["c"] if due else [])


@pytest.mark.parametrize(
    ("run", "code"),
    [
        (result(), 0),
        (result(parked=True), 3),
        (result(due=True), 4),
        (result(parked=True, due=True), 4),
        (result(stopped=True), 1),
        (result(parked=True, due=True, stopped=True), 1),
    ],
)
def test_until_caught_up_exits_with_the_most_severe_code(run: RunResult, code: int) -> None:
    """A consumer stopped (1) outranks a rebuild due (4), which outranks parked messages (3)."""
    assert outcome.exit_code(run, until_caught_up=True) == code


def test_a_signalled_run_exits_0_whatever_it_met_and_130_on_a_second_signal() -> None:
    """A run ended by a signal exits 0 (what it met was shown as it ran); a second one, 130."""
    run = result(parked=True, due=True, stopped=True)
    run.signalled = True
    assert outcome.exit_code(run, until_caught_up=False) == 0
    run.forced = True
    assert outcome.exit_code(run, until_caught_up=False) == 130


def test_a_run_that_ends_on_its_own_because_every_consumer_halted_exits_1() -> None:
    """Without ``--until-caught-up`` a run ends unsignalled only when every consumer halted: a
    failure a supervisor (systemd's ``Restart=on-failure``) must see, not exit 0."""
    assert outcome.exit_code(result(stopped=True), until_caught_up=False) == 1
