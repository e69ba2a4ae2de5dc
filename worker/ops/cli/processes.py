"""``worker processes``: every process manager's instances and deadlines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.ops.cli import common, output
from worker.ops.status import process_status
from worker.store import privileges

if TYPE_CHECKING:
    import asyncpg
    from rich.table import Table

    from worker.ops.app import App

app = typer.Typer()


@app.command("processes")
def processes(
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """Every process manager: its instances (all, active), its deadlines (pending, due now,
    fired, cancelled, failed) and its consumers' states."""
    rows = process_rows()
    if output.printed_plainly(rows, as_json=as_json, none="no process managers in this domain"):
        return
    output.console().print(process_table(rows))


def process_rows() -> list[dict[str, Any]]:
    """The process report of the configured database, read with the read-only rights."""

    async def work(application: App, pool: asyncpg.Pool[Any]) -> list[dict[str, Any]]:
        return [row.as_dict() for row in await process_status(pool, application.domain)]

    rows: list[dict[str, Any]] = common.with_pool(work, read_only=True, rights=privileges.READ)
    return rows


def process_table(rows: list[dict[str, Any]]) -> Table:
    """The process report as a table (``worker processes``, and below ``worker status``)."""
    table = output.table(
        "process manager",
        "instances",
        "active",
        "deadlines pending",
        "due",
        "fired",
        "cancelled",
        "failed",
        "state",
        names=("process manager",),
    )
    for r in rows:
        table.add_row(
            f"{r['name']} ({r['category']})",
            str(r["instances"]),
            str(r["active"]),
            str(r["deadlines_pending"]),
            str(r["deadlines_due"]),
            str(r["deadlines_fired"]),
            str(r["deadlines_cancelled"]),
            str(r["deadlines_failed"]),
            ", ".join(r["states"]) or "-",
        )
    return table
