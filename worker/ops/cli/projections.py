"""``worker status``, ``worker reset`` and ``worker rebuild``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
import structlog
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from worker.engine.lease import Lease, owner_id
from worker.engine.positions import PostgresPositionStore
from worker.engine.rebuild import RebuildOutcome, find_projector, rebuild
from worker.errors import UsageError, WorkerError
from worker.ops.cli import common, output
from worker.ops.status import consumer_status
from worker.store import privileges
from worker.store.message_store import MessageStore

log = structlog.get_logger("worker.cli")

app = typer.Typer()


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """Every consumer: position, head, lag, state, leaseholder, parked messages."""
    application = common.load_app()

    async def work() -> list[dict[str, Any]]:
        pool = await application.pool(rights=privileges.READ)
        try:
            return [s.as_dict() for s in await consumer_status(pool, application.domain)]
        finally:
            await pool.close()

    rows = anyio.run(work)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = output.table(
        "consumer",
        "position",
        "head",
        "lag",
        "lag (s)",
        "state",
        "leaseholder",
        "parked",
        names=("consumer", "leaseholder"),
    )
    for r in rows:
        table.add_row(
            r["consumer"],
            str(r["position"]),
            str(r["head"]),
            str(r["lag_messages"]),
            f"{r['lag_seconds']:.1f}",
            r["state"],
            r["leaseholder"] or "-",
            str(r["parked"]),
        )
    output.console().print(table)


@app.command("reset")
def reset(
    consumer: Annotated[str, typer.Argument(help="Consumer name, e.g. order_summary:order.")],
    to: Annotated[int, typer.Option("--to", help="Global position to resume after.")] = 0,
    wait: Annotated[
        bool, typer.Option(help="Wait for the process holding the consumer to let go.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(help="Allow a position beyond the category head (skips what comes)."),
    ] = False,
) -> None:
    """Set a consumer's position (it resumes with the message after it)."""
    application = common.load_app()
    slots = {slot.name: slot for s in application.domain.subscribers for slot in s.slots()}
    if consumer not in slots:
        raise WorkerError(
            f"no consumer named {consumer!r}; known: {', '.join(sorted(slots)) or 'none'}"
        )
    if to < 0:
        raise UsageError(f"--to must be a global position (0 or more), got {to}")
    category = slots[consumer].category

    async def work() -> int:
        pool = await application.pool()
        lease = Lease(application.dsn, consumer)
        try:
            head = await MessageStore(pool).category_head(category) or 0
            if to > head and not force:
                raise UsageError(
                    f"--to {to} is beyond the head of category {category!r} ({head}): "
                    f"{consumer} would skip every message written until the store passes "
                    "it; pass --force to set it anyway"
                )
            if not await lease.try_acquire():
                if not wait:
                    raise WorkerError(
                        f"consumer {consumer!r} is held by a running worker; stop it or pass --wait"
                    )
                await lease.acquire()
            positions = PostgresPositionStore(pool)
            before = await positions.load(consumer)
            await positions.set(consumer, to)
            log.info("position reset", consumer=consumer, old=before, new=to, by=owner_id())
            return before
        finally:
            await lease.release()
            await pool.close()

    before = anyio.run(work)
    typer.echo(f"{consumer}: position {before} -> {to}")


@app.command("rebuild")
def rebuild_command(
    projection: Annotated[str, typer.Argument(help="Projection (projector) name.")],
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Truncate and replay instead of blue/green.")
    ] = False,
) -> None:
    """Rebuild a projection from position 0 (blue/green: readers keep the old tables)."""
    application = common.load_app()
    subscriber = find_projector(application.domain.subscribers, projection)
    columns = (
        TextColumn(f"rebuilding {projection}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} msg/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )

    async def work(progress: Progress) -> RebuildOutcome:
        task = progress.add_task("rebuild", total=None, rate=0)
        started = anyio.current_time()

        def report(done: int, total: int) -> None:
            elapsed = max(anyio.current_time() - started, 1e-6)
            progress.update(task, completed=done, total=total, rate=round(done / elapsed))

        pool = await application.pool(max_size=2 * len(subscriber.categories) + 2)
        try:
            return await rebuild(
                application.dsn,
                pool,
                application.settings.worker,
                subscriber,
                in_place=in_place,
                on_progress=report,
            )
        finally:
            await pool.close()

    with Progress(*columns) as progress:
        outcome = anyio.run(work, progress)
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
