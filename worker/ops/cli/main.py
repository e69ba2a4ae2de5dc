"""The ``worker`` command line: one Typer application, each command group a module of this
package with a Typer of its own (``db`` and ``dlq`` as groups, the others at the top)."""

from __future__ import annotations

import sys
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated

import asyncpg
import typer

from worker.errors import WorkerError
from worker.ops.cli import (
    common,
    config,
    console,
    db,
    dlq,
    embedded,
    events,
    group,
    pause,
    processes,
    projections,
    run,
)
from worker.store.read_schema import ROLES_HELP

app = typer.Typer(
    help="Async projection worker for the MessageDB event store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(run.app)
app.add_typer(projections.app)
app.add_typer(processes.app)
app.add_typer(pause.app)
app.add_typer(config.app)
app.add_typer(console.app)
app.add_typer(db.app, name="db")
app.add_typer(dlq.app, name="dlq")
app.add_typer(events.app, name="events")
app.add_typer(embedded.app, name="embedded")
app.add_typer(group.app, name="group")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Path to domain.toml (default: ./domain.toml)."),
]


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"worker {package_version('worker')}")
        raise typer.Exit


VersionOption = Annotated[
    bool,
    typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
]


@app.callback()
def _root(config: ConfigOption = None, version: VersionOption = False) -> None:
    common.invocation.config = config


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
