"""``worker db``: install MessageDB, the worker schema and the read models (the owner role),
grant a runtime role what ``worker run`` needs, show the DSN, stop the embedded server."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio
import typer

from worker.ops.app import resolve_dsn
from worker.ops.cli import common, embedded
from worker.ops.install import configured_domain, grant_role, install_application
from worker.store.database import redact

app = typer.Typer(help="Install and inspect the event store database.", no_args_is_help=True)


@app.command("install")
def db_install() -> None:
    """Install MessageDB, the worker schema and the read models (owner role; idempotent).

    The read models are the tables and views of the configured projections, and what their
    setup(conn) creates. Every prerequisite is checked before anything changes.
    """
    settings = common.settings()
    domain = configured_domain(settings)
    dsn = resolve_dsn(settings)
    done = anyio.run(install_application, settings, domain, dsn)
    typer.echo(done.store.describe())
    if done.store.migrations_applied:
        typer.echo("worker schema migrations applied: " + ", ".join(done.store.migrations_applied))
    else:
        typer.echo("worker schema up to date")
    schema = settings.worker.read_model_schema
    for name, tables in done.read_models.items():
        typer.echo(f"read models of {name} in schema {schema}: {', '.join(tables)}")
    if done.setups:
        typer.echo("setup(conn) run for: " + ", ".join(done.setups))
    for name, reason in done.due.items():
        typer.echo(f"rebuild due for {name}: {reason}")
    if done.group_indexes:
        typer.echo("consumer group indexes built: " + ", ".join(done.group_indexes))
    if done.regranted:
        typer.echo("runtime roles granted again: " + ", ".join(done.regranted))


@app.command("grant")
def db_grant(
    role: Annotated[str, typer.Argument(help="The runtime role `worker run` connects as.")],
) -> None:
    """Give ROLE exactly what `worker run` needs, and no CREATE anywhere.

    Run it as the owner role, after `worker db install`. Idempotent; later installs and
    rebuilds grant the roles it recorded again.
    """
    settings = common.settings()
    domain = configured_domain(settings)
    dsn = resolve_dsn(settings)
    granted = anyio.run(partial(grant_role, settings, domain, dsn, role))
    typer.echo(
        f'granted role "{role}" what `worker run` needs: membership of message_store, '
        f"SELECT/INSERT/UPDATE/DELETE on the worker schema's tables, and "
        f"{len(granted.relations)} read-model relation(s)"
    )
    if granted.skipped:
        typer.echo(
            "not granted (owned by another role; grant them as their owner): "
            + ", ".join(granted.skipped)
        )
    for right in granted.excess:
        typer.echo(f'note: role "{role}" also holds {right}, which `worker run` does not need')


@app.command("dsn")
def db_dsn(
    show_password: Annotated[bool, typer.Option(help="Print the password too.")] = False,
) -> None:
    """Print the DSN in force (the embedded server's only while it runs: this starts none)."""
    dsn = resolve_dsn(common.settings(), start=False)
    typer.echo(dsn if show_password else redact(dsn))


@app.command("stop-embedded", hidden=True)
def db_stop_embedded() -> None:
    """Stop the embedded PostgreSQL (the older name of `worker embedded stop`)."""
    embedded.embedded_stop()
