"""``worker events``: browse the event store (``browse``), and ``check``: decode every stored
message with today's classes and upcasters."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from worker.ops.cli import browse, common, output
from worker.ops.events import EventsCheck, check_events
from worker.store.message_store import MessageStore

if TYPE_CHECKING:
    import asyncpg

    from worker.ops.app import App

app = typer.Typer(
    help="Browse the event store (streams, categories, messages, aggregates, causation) and "
    "check stored events against the code.",
    no_args_is_help=True,
)
browse.register(app)


@app.command("check")
def events_check(
    start: Annotated[
        int, typer.Option("--from", min=1, help="Global position to start at (to resume).")
    ] = 1,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000)] = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """Decode every message of a registered type; exit 1 if any no longer decodes."""
    with Progress(
        TextColumn("checking events"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("up to #{task.fields[position]}"),
        TimeElapsedColumn(),
        transient=True,
        console=Console(stderr=True),
    ) as progress:
        task = progress.add_task("check", total=None, position=start - 1)

        def report(found: EventsCheck) -> None:
            progress.update(task, completed=found.checked, position=found.last_position)

        async def work(app: App, pool: asyncpg.Pool[Any]) -> EventsCheck:
            store = MessageStore(pool)
            head = await store.global_head()
            progress.update(task, total=None if head is None else max(head - start + 1, 0))
            return await check_events(
                store, app.domain, start=start, batch_size=batch_size, on_batch=report
            )

        found: EventsCheck = common.with_pool(work, read_only=True)
    _print(found, as_json)
    if found.failed:
        raise typer.Exit(1)


def _print(found: EventsCheck, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({**asdict(found), "checked": found.checked, "failed": found.failed}))
        return
    table = output.table("type", "checked", "failed", "first failure")
    for name, seen in sorted(found.types.items()):
        first = seen.first_failure
        where = (
            "" if first is None else f"{first['stream_name']}@{first['position']}: {first['error']}"
        )
        table.add_row(name, str(seen.checked), str(seen.failed), where)
    output.console().print(table)
    typer.echo(
        f"{found.checked} messages checked up to global position {found.last_position}; "
        f"{found.failed} failed" + ("" if not found.failed else " (resume with --from)")
    )
