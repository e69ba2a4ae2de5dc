"""``worker pause`` and ``worker resume``: stop a consumer handling messages, and let it go on.

A pause is stored in the database (``worker.paused``): it outlives restarts and holds for every
process. The process holding the consumer keeps its lease and handles nothing (``worker status``
shows it as ``paused``, ``/readyz`` still counts it as ready, ``worker_consumer_paused`` is 1);
standbys go on standing by.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.engine import operations
from worker.ops.cli import common

if TYPE_CHECKING:
    import asyncpg

    from worker.ops.app import App

app = typer.Typer()

Names = Annotated[
    list[str],
    typer.Argument(help="Consumers (e.g. order_summary:order), or subscribers (all of theirs)."),
]


@app.command("pause")
def pause(
    names: Names,
    reason: Annotated[str | None, typer.Option(help="Why, for `worker status --json`.")] = None,
) -> None:
    """Pause consumers until `worker resume` (stored: it survives restarts).

    The running worker stops handling them at once and keeps their leases.
    """

    async def work(app: App, pool: asyncpg.Pool[Any]) -> operations.Changed:
        return await operations.pause(pool, app.domain, names, reason)

    done = common.with_pool(work)
    for name in done.named:
        typer.echo(f"{name}: paused" if name in done.changed else f"{name}: was paused already")


@app.command("resume")
def resume(names: Names) -> None:
    """Resume paused consumers: the worker holding them goes on at once."""

    async def work(app: App, pool: asyncpg.Pool[Any]) -> operations.Changed:
        return await operations.resume(pool, app.domain, names)

    done = common.with_pool(work)
    for name in done.named:
        typer.echo(f"{name}: resumed" if name in done.changed else f"{name}: was not paused")
