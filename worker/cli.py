"""The ``worker`` command line."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Annotated

import anyio
import typer

from worker import _cli_dlq, _cli_projections
from worker.app import App
from worker.database import is_embedded, redact, resolve_dsn, stop_embedded
from worker.errors import UsageError, WorkerError
from worker.installer import install
from worker.log import configure_logging
from worker.runner import Runner, RunResult
from worker.settings import Settings, load_settings

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

    async def main() -> RunResult:
        runner = Runner(application.domain, application.dsn, application.settings.worker, only=only)
        return await runner.run(until_caught_up=until_caught_up)

    result = anyio.run(main)
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
    done = "installed" if report.message_db_installed else "already installed"
    typer.echo(f"MessageDB {report.message_db_version} {done} in database {report.database}")
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
    """Entry point: every ``WorkerError`` becomes one line on stderr and exit code 1."""
    try:
        app()
    except UsageError as error:
        print(f"worker: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except WorkerError as error:
        print(f"worker: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
