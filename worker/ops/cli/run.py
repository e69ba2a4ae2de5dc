"""``worker run``: every consumer until signalled, or until caught up."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import structlog
import typer

from worker.engine import operations
from worker.ops import outcome
from worker.ops.cli import common
from worker.ops.crash import guard, run_guarded

if TYPE_CHECKING:
    from worker.engine.runner import RunResult

log = structlog.get_logger("worker.cli")

app = typer.Typer()


@app.command("run")
def run(
    until_caught_up: Annotated[
        bool, typer.Option(help="Exit 0 once every consumer has reached its category's head.")
    ] = False,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only these consumers or subscribers.")
    ] = None,
) -> None:
    """Run every consumer until SIGTERM/SIGINT (or until caught up)."""
    application = guard(common.load_app)
    if only:
        operations.consumers_named(application.domain, only, "--only")

    async def main() -> RunResult:
        return await application.runner(only=only).run(until_caught_up=until_caught_up)

    try:
        result = run_guarded(main)
    finally:
        if application.telemetry is not None:
            application.telemetry.shutdown()  # what the exporters have not sent yet
    _log_stopped(result, until_caught_up)
    for line in outcome.summary(result, until_caught_up):
        print(line, file=sys.stderr)
    code = outcome.exit_code(result, until_caught_up)
    if code:
        raise SystemExit(code)


def _log_stopped(result: RunResult, until_caught_up: bool) -> None:
    """The run's last log line: that the worker stopped, and why."""
    if result.forced:
        reason = "second signal"
    elif result.signalled:
        reason = "signal"
    elif until_caught_up:
        reason = "caught up"
    else:
        reason = "all consumers halted"
    details: dict[str, list[str]] = {
        "halted": result.stopped,
        "not_started_until_rebuilt": result.needs_rebuild,
    }
    parked = outcome.parked(result)
    log.info(
        "worker stopped",
        reason=reason,
        **{k: v for k, v in details.items() if v},
        **({"parked": parked} if parked else {}),
    )
