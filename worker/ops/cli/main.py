"""The ``worker`` command line."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import anyio
import asyncpg
import structlog
import typer

from worker.errors import UsageError, WorkerError
from worker.ops.app import App, connect_options, resolve_dsn
from worker.ops.cli import dlq as _cli_dlq
from worker.ops.cli import projections as _cli_projections
from worker.ops.log import configure_logging
from worker.ops.runner import Runner
from worker.ops.settings import Settings, load_settings
from worker.store.database import (
    configure,
    is_embedded,
    redact,
    stop_embedded,
)
from worker.store.installer import install
from worker.store.read_schema import ROLES_HELP

if TYPE_CHECKING:
    from worker.domain import Domain
    from worker.engine.runner import RunResult

log = structlog.get_logger("worker.cli")

app = typer.Typer(
    help="Async projection worker for the MessageDB event store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Install and inspect the event store database.", no_args_is_help=True)
app.add_typer(db_app, name="db")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Path to domain.toml (default: ./domain.toml)."),
]


class _State:
    config: Path | None = None

    def settings(self) -> Settings:
        settings = load_settings(self.config)
        configure_logging(settings.worker.log_level, settings.worker.log_format)
        configure(connect_options(settings))
        return settings


_state = _State()


def _load_app() -> App:
    return App.load(_state.settings())


app.add_typer(_cli_dlq.bind(_load_app), name="dlq")
_cli_projections.register(app, _load_app)


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
    application = _load_app()
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


@app.callback()
def _root(config: ConfigOption = None) -> None:
    _state.config = config


@db_app.command("install")
def db_install() -> None:
    """Install MessageDB and the worker schema into the configured database (idempotent)."""
    settings = _state.settings()
    dsn = resolve_dsn(settings)
    report = anyio.run(
        partial(install, notify_trigger=settings.event_store.notify_trigger),
        dsn,
        settings.message_db,
    )
    typer.echo(report.describe())
    if report.migrations_applied:
        typer.echo("worker schema migrations applied: " + ", ".join(report.migrations_applied))
    else:
        typer.echo("worker schema up to date")


@db_app.command("dsn")
def db_dsn(
    show_password: Annotated[bool, typer.Option(help="Print the password too.")] = False,
) -> None:
    """Print the DSN in force (starting the embedded server if that is the one configured)."""
    dsn = resolve_dsn(_state.settings())
    typer.echo(dsn if show_password else redact(dsn))


@db_app.command("stop-embedded")
def db_stop_embedded() -> None:
    """Stop the embedded PostgreSQL, if this configuration uses it and it runs."""
    settings = _state.settings()
    if not is_embedded(settings.event_store.dsn()):
        raise WorkerError("this configuration names a PostgreSQL server; nothing embedded to stop")
    stopped = stop_embedded(settings.event_store.embedded_data_dir)
    typer.echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


def main() -> None:
    """Entry point: every ``WorkerError`` becomes one line on stderr and its exit code (1, or 2
    for a usage error); so does a right the database role lacks, wherever it shows."""
    try:
        app()
    except WorkerError as error:
        print(f"worker: error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except asyncpg.InsufficientPrivilegeError as error:
        print(
            f"worker: error: the database role lacks a right: {error} ({ROLES_HELP})",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
