"""``worker status`` (once, or ``--watch``), ``worker projections``, ``worker reset`` and
``worker rebuild``."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer
from rich.console import Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from worker.engine import operations
from worker.errors import UsageError
from worker.ops.cli import common, output
from worker.ops.cli.processes import process_table
from worker.ops.status import consumer_status, process_status, projection_status
from worker.ops.status import watch as watch_status
from worker.store import privileges

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from typing import TypeAlias

    import asyncpg
    from rich.table import Table

    from worker.domain import Domain
    from worker.engine.rebuild import RebuildOutcome
    from worker.engine.subscriber import Subscriber
    from worker.ops.app import App
    from worker.ops.status import Frame

    Report: TypeAlias = Callable[[int, int, float], None]  # (done, total, seconds so far)
    StatusReport: TypeAlias = Callable[[asyncpg.Pool[Any], Domain], Awaitable[Sequence[Any]]]

app = typer.Typer()


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh until interrupted, with rates.")
    ] = False,
    interval: Annotated[
        float | None, typer.Option(help="Seconds between refreshes with --watch (default 2).")
    ] = None,
    count: Annotated[
        int | None, typer.Option(help="Stop after this many refreshes with --watch.")
    ] = None,
) -> None:
    """Every consumer: position, head, lag, state, leaseholder, parked messages.

    With --watch, a live view that refreshes, with each consumer's rate (one frame after
    another when not on a terminal; --count ends it after so many).
    """
    if not watch and (interval is not None or count is not None):
        raise UsageError("--interval and --count go with --watch")
    if interval is not None and interval <= 0:
        raise UsageError(f"--interval must be more than 0 seconds, got {interval:g}")
    if count is not None and count < 1:
        raise UsageError(f"--count must be 1 or more, got {count}")
    if watch:
        _watch(as_json, 2.0 if interval is None else interval, count)
        return

    rows = _rows(consumer_status)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    output.console().print(_status_table(rows))
    if process_rows := _rows(process_status):
        output.console().print(process_table(process_rows))


def _rows(report: StatusReport) -> list[dict[str, Any]]:
    """The rows of a report on the configured database, read with the read-only rights."""

    async def work(application: App, pool: asyncpg.Pool[Any]) -> list[dict[str, Any]]:
        return [row.as_dict() for row in await report(pool, application.domain)]

    rows: list[dict[str, Any]] = common.with_pool(work, read_only=True, rights=privileges.READ)
    return rows


def _status_table(rows: list[dict[str, Any]], rates: bool = False) -> Table:
    headers = ["consumer", "position", "head", "lag", "lag (s)"]
    headers += ["rate (msg/s)"] if rates else []
    table = output.table(*headers, "state", "leaseholder", "parked", names=headers[:1])
    for r in rows:
        cells = [r["consumer"], str(r["position"]), str(r["head"]), str(r["lag_messages"])]
        cells.append(f"{r['lag_seconds']:.1f}")
        if rates:
            cells.append("-" if r["rate"] is None else f"{r['rate']:.1f}")
        state = r["state"] if r["pause_reason"] is None else f"{r['state']}: {r['pause_reason']}"
        state += "" if r["concurrency"] == 1 else f" (x{r['concurrency']})"
        cells += [state, r["leaseholder"] or "-", str(r["parked"])]
        table.add_row(*cells)
    return table


def _watch(as_json: bool, interval: float, count: int | None) -> None:
    """Frames of ``worker status``: redrawn in place on a terminal, printed one after another
    (or as JSON lines) elsewhere. Ctrl-C ends it (exit 0)."""
    console = output.console()
    live = not as_json and sys.stdout.isatty()

    application = common.load_app(read_only=True)

    def frames(show: Callable[[Frame], None]) -> None:
        async def work(application: App, pool: asyncpg.Pool[Any]) -> None:
            async for frame in watch_status(pool, application.domain, interval, count):
                show(frame)

        common.with_pool(work, app=application, rights=privileges.READ)

    def title(frame: Frame) -> str:
        at = frame.at.strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"worker status at {at}, every {interval:g} s"

    def printed(frame: Frame) -> None:
        if as_json:
            typer.echo(json.dumps(frame.as_dict()))
            return
        console.print(title(frame))
        console.print(_status_table(frame.as_dict()["consumers"], rates=True))

    try:
        if not live:
            frames(printed)
            return
        with Live(console=console, auto_refresh=False) as screen:

            def redrawn(frame: Frame) -> None:
                view = Group(
                    title(frame) + " (Ctrl-C to stop)",
                    _status_table(frame.as_dict()["consumers"], rates=True),
                )
                screen.update(view, refresh=True)

            frames(redrawn)
    except KeyboardInterrupt:
        return


@app.command("projections")
def projections(
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """Every projection: version, categories, tables, generations, lag, state.

    The version is the code's, and the live tables' when they differ; the generation live and
    the one a rebuild is filling; the lag and states of its live consumers.
    """
    rows = _rows(projection_status)
    if output.printed_plainly(rows, as_json=as_json, none="no projections in this domain"):
        return
    table = output.table(
        "projection",
        "version",
        "categories",
        "tables",
        "live",
        "building",
        "lag",
        "state",
        names=("projection", "categories", "tables"),
    )
    for r in rows:
        version = r["version"] or "-"
        if r["stored_version"] not in (None, r["version"]):
            version += f" (tables: {r['stored_version']})"
        table.add_row(
            r["name"],
            version,
            ", ".join(r["categories"]),
            ", ".join(r["tables"]) or "- (its own setup)",
            "-" if r["live"] is None or not r["tables"] else f"g{r['live']}",
            "-" if r["building"] is None else f"g{r['building']}",
            str(r["lag"]),
            ", ".join(r["states"]),
        )
    output.console().print(table)


@app.command("reset")
def reset(
    consumer: Annotated[str, typer.Argument(help="Consumer name, e.g. order_summary:order.")],
    to: Annotated[
        int,
        typer.Option(
            "--to", help="Global position to resume after.", parser=common.whole_number("--to")
        ),
    ] = 0,
    wait: Annotated[
        bool,
        typer.Option(
            help="Beside a running worker holding the consumer: wait for its batch in flight, "
            "then set the position under it (it goes on from there at once)."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(help="Allow a position beyond the category head (skips what comes)."),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Reset a process manager's consumer without asking."),
    ] = False,
) -> None:
    """Set a consumer's position (it resumes with the message after it).

    A process manager's consumer asks first (or takes --yes): its instances pass over the
    events they handled before, but handle every event they never saw, issuing commands.
    """

    application = common.load_app()
    if not yes:
        slot = operations.slot_named(application.domain, consumer)
        confirm_process_reset(slot.subscriber, consumer, to)

    async def work(application: App, pool: asyncpg.Pool[Any]) -> int:
        domain = application.domain
        return await operations.reset(
            pool, application.database, domain, consumer, to, wait=wait, force=force
        )

    before = common.with_pool(work, app=application)
    typer.echo(f"{consumer}: position {before} -> {to}")


def confirm_process_reset(subscriber: Subscriber, consumer: str, to: int) -> None:
    """Ask before moving a process manager's consumer (it may issue commands again)."""
    if subscriber.process is None:
        return
    typer.confirm(
        f"{consumer} is a consumer of process manager {subscriber.name!r}: from position {to} "
        "its instances pass over events they handled before but handle those they never saw, "
        "issuing their commands and deadlines. Reset it?",
        abort=True,
    )


@app.command("rebuild")
def rebuild_command(
    projection: Annotated[
        str | None, typer.Argument(help="Projection (projector) name; or --all.")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Rebuild every projection that has read models.")
    ] = False,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Truncate and replay instead of blue/green.")
    ] = False,
) -> None:
    """Rebuild a projection (or --all) from position 0; needs the owner role.

    Blue/green by default: readers keep the old tables until the switch.
    """
    if (projection is None) == (not every):
        raise UsageError("name one projection, or pass --all (not both)")
    application = common.load_app()
    subscribers = operations.projections_to_rebuild(application.domain, projection)

    async def check(application: App, pool: asyncpg.Pool[Any]) -> None:
        await operations.check_rebuild_rights(pool, subscribers, in_place=in_place)

    common.with_pool(check, app=application)
    for subscriber in subscribers:
        _rebuild_one(application, subscriber, in_place)


def _rebuild_one(application: App, subscriber: Subscriber, in_place: bool) -> None:
    projection = subscriber.name
    if sys.stdout.isatty():
        with Progress(*_bar_columns(projection)) as progress:
            report = _bar(progress)
            outcome = _rebuild(application, subscriber, in_place, report)
    else:
        outcome = _rebuild(application, subscriber, in_place, _lines(projection))
    if outcome.refilled_by:
        typer.echo(
            f"{projection}: tables emptied; the running worker "
            f"({', '.join(outcome.refilled_by)}) refills them from position 0 now; "
            "`worker status` shows its consumers as rebuilding until they have caught up"
        )
    elif in_place:
        typer.echo(f"{projection}: tables emptied and refilled from position 0")
    else:
        typer.echo(f"{projection}: live generation {outcome.generation}")


def _rebuild(
    application: App, subscriber: Subscriber, in_place: bool, report: Report
) -> RebuildOutcome:
    async def work(application: App, pool: asyncpg.Pool[Any]) -> RebuildOutcome:
        started = anyio.current_time()

        def progress(done: int, total: int) -> None:
            report(done, total, max(anyio.current_time() - started, 1e-6))

        settings = application.settings.worker
        return await operations.rebuild_projection(
            pool,
            application.database,
            settings,
            subscriber,
            in_place=in_place,
            on_progress=progress,
        )

    size = 3 * len(subscriber.slots()) + 2
    outcome: RebuildOutcome = common.with_pool(work, app=application, max_size=size)
    return outcome


def _bar_columns(projection: str) -> tuple[ProgressColumn, ...]:
    return (
        TextColumn(f"rebuilding {projection}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} msg/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def _bar(progress: Progress) -> Report:
    """A progress bar on a terminal, redrawn in place."""
    task = progress.add_task("rebuild", total=None, rate=0)

    def report(done: int, total: int, elapsed: float) -> None:
        progress.update(task, completed=done, total=total, rate=round(done / elapsed))

    return report


# Seconds between progress lines when stdout is not a terminal.
LINE_EVERY = 5.0


def _lines(projection: str) -> Report:
    """Plain progress lines where there is no terminal to redraw a bar on (a pipe, a log): one
    every ``LINE_EVERY`` seconds and one at the end, never cut."""
    printed = {"at": 0.0, "done": False}

    def report(done: int, total: int, elapsed: float) -> None:
        finished = done >= total
        if printed["done"] or (not finished and elapsed - printed["at"] < LINE_EVERY):
            return
        printed["at"], printed["done"] = elapsed, finished
        share = 100 if total == 0 else done * 100 // total
        typer.echo(
            f"rebuilding {projection}: {done}/{total} messages ({share}%), "
            f"{round(done / elapsed)} msg/s, {elapsed:.1f} s"
        )

    return report
