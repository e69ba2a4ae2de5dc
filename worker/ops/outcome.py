"""How ``worker run`` ends: its exit code, and what it says on stderr about the run.

The codes (docs/commands.md): 0 ran until signalled, or caught up with nothing parked;
1 could not start, or a consumer stopped on a failure (or sits beyond its category head);
2 a usage error; 3 caught up, but this run parked messages; 4 a projection is due for a
rebuild and was not run; 130 a second signal. When several apply, the most severe wins:
1, then 4, then 3. A run ended by a signal exits 0 (or 130): what it met was shown while it
ran (``worker status``, ``/readyz``, metrics) and is printed as it ends. A run that ends on its
own without ``--until-caught-up`` (every consumer halted) exits by the same rule as one with it,
so a supervisor sees that it failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.engine.runner import RunResult

OK = 0
FAILED = 1
USAGE = 2
PARKED = 3
REBUILD_DUE = 4
FORCED = 130


def parked(result: RunResult) -> dict[str, int]:
    """Messages each consumer parked in this run (those that parked any)."""
    return {c.name: c.parked_count for c in result.consumers if c.parked_count}


def exit_code(result: RunResult, until_caught_up: bool) -> int:
    """The run's exit code (see the module's docstring)."""
    if result.forced:
        return FORCED
    if result.signalled:
        return OK
    if result.stopped or result.ahead:
        return FAILED
    if result.needs_rebuild:
        return REBUILD_DUE
    return PARKED if parked(result) else OK


def summary(result: RunResult, until_caught_up: bool) -> list[str]:
    """The lines ``worker run`` prints on stderr as it ends (none when all went well)."""
    lines = []
    if result.needs_rebuild:
        names = ", ".join(result.needs_rebuild)
        lines.append(f"projections not run until rebuilt (`worker rebuild NAME`): {names}")
    if result.stopped:
        lines.append(f"consumers stopped on failure: {', '.join(result.stopped)}")
    if result.paused:
        lines.append(f"consumers paused (`worker resume` them): {', '.join(result.paused)}")
    if result.ahead and until_caught_up:
        names = ", ".join(f"{c.name} (position {c.position}, head {c.head})" for c in result.ahead)
        lines.append(f"positions beyond their category head (reset them): {names}")
    counts = parked(result)
    if counts:
        each = ", ".join(f"{name} {count}" for name, count in counts.items())
        lines.append(
            f"parked {sum(counts.values())} message(s) in this run (`worker dlq list`): {each}"
        )
    return [f"worker: {line}" for line in lines]
