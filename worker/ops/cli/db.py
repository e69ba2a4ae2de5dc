"""``worker db``: install MessageDB and the worker schema, show the DSN, stop the embedded
server."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio
import typer

from worker.errors import WorkerError
from worker.ops.app import resolve_dsn
from worker.ops.cli import common
from worker.store.database import is_embedded, redact, stop_embedded
from worker.store.installer import install

app = typer.Typer(help="Install and inspect the event store database.", no_args_is_help=True)


@app.command("install")
def db_install() -> None:
    """Install MessageDB and the worker schema into the configured database (idempotent)."""
    settings = common.settings()
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


@app.command("dsn")
def db_dsn(
    show_password: Annotated[bool, typer.Option(help="Print the password too.")] = False,
) -> None:
    """Print the DSN in force (starting the embedded server if that is the one configured)."""
    dsn = resolve_dsn(common.settings())
    typer.echo(dsn if show_password else redact(dsn))


@app.command("stop-embedded")
def db_stop_embedded() -> None:
    """Stop the embedded PostgreSQL, if this configuration uses it and it runs."""
    settings = common.settings()
    if not is_embedded(settings.event_store.dsn()):
        raise WorkerError("this configuration names a PostgreSQL server; nothing embedded to stop")
    stopped = stop_embedded(settings.event_store.embedded_data_dir)
    typer.echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
