"""``worker run``: every consumer until signalled, or until caught up."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import anyio
import structlog
import typer

from worker.errors import UsageError
from worker.ops.cli import common
from worker.ops.runner import Runner

if TYPE_CHECKING:
    from worker.domain import Domain
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
    application = common.load_app()
    if only:
        _check_only(application.domain, only)

    async def main() -> RunResult:
        runner = Runner(application.domain, application.dsn, application.settings.worker, only=only)
        return await runner.run(until_caught_up=until_caught_up)

    result = anyio.run(main)
    _log_stopped(result, until_caught_up)
    if result.forced:
        raise SystemExit(130)
    if result.needs_rebuild:
        names = ", ".join(result.needs_rebuild)
        print(f"worker: projections not run until rebuilt: {names}", file=sys.stderr)
        if until_caught_up:
            raise SystemExit(1)
    if result.stopped:
        names = ", ".join(result.stopped)
        print(f"worker: consumers stopped on failure: {names}", file=sys.stderr)
        if until_caught_up:
            raise SystemExit(1)
    if result.ahead and until_caught_up:
        names = ", ".join(f"{c.name} (position {c.position}, head {c.head})" for c in result.ahead)
        print(
            f"worker: positions beyond their category head (reset them): {names}", file=sys.stderr
        )
        raise SystemExit(1)


def _check_only(domain: Domain, only: list[str]) -> None:
    """Every ``--only`` name must be a consumer or a subscriber of the domain."""
    subscribers = {s.name for s in domain.subscribers}
    consumers = {slot.name for s in domain.subscribers for slot in s.slots()}
    unknown = [name for name in only if name not in subscribers | consumers]
    if unknown:
        raise UsageError(
            f"--only {', '.join(unknown)}: no such consumer or subscriber; known: "
            + (", ".join(sorted(subscribers | consumers)) or "none")
        )


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
    log.info("worker stopped", reason=reason, **{k: v for k, v in details.items() if v})
