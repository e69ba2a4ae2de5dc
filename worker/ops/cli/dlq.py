"""``worker dlq``: list, show, replay and discard parked messages."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.engine import operations
from worker.engine.dead_letters import PostgresParkedMessages
from worker.errors import UsageError, WorkerError
from worker.ops.cli import common, output

if TYPE_CHECKING:
    import asyncpg

    from worker.ops.app import App

app = typer.Typer(help="Parked messages (dead letters).", no_args_is_help=True)

ID_HELP = "A parked message's id (`worker dlq list` shows them)."
parse_id = common.whole_number("a parked message's id")
NAMED = operations.NAMED


@app.command("list")
def dlq_list(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer.")] = None,
    stream: Annotated[str | None, typer.Option(help="Only this stream.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines for scripts.")] = False,
) -> None:
    """List parked messages, oldest first per consumer."""

    async def work(app: App, pool: asyncpg.Pool[Any]) -> list[dict[str, Any]]:
        await operations.check_parked_consumer(pool, app.domain, consumer)
        return await PostgresParkedMessages(pool).listing(consumer, stream)

    rows = common.with_pool(work, read_only=True)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, default=str))
        return
    table = output.table(
        "id",
        "consumer",
        "stream",
        "pos",
        "global",
        "type",
        "attempts",
        "error",
        names=("consumer", "stream", "type"),
    )
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["consumer"],
            r["stream_name"],
            str(r["position"]),
            str(r["global_position"]),
            r["type"],
            str(r["attempts"]),
            _why(r).splitlines()[0][:80],
        )
    output.console().print(table if rows else "no parked messages")


def _why(row: dict[str, Any]) -> str:
    """A parked message's error, or what it waits behind."""
    if row["error"] is not None:
        return str(row["error"])
    if row["blocked_by"] is not None:
        return f"parked behind #{row['blocked_by']}"
    # The stream's first parked message was discarded; this one still waits, in order.
    return "the message ahead was discarded: replay or discard the stream"


# Characters of a message's data or metadata that `dlq show` prints without --full.
SHOW_LIMIT = 4000


def _clip(value: Any, limit: int) -> Any:
    """``value``, or when its JSON is longer than ``limit`` characters, its beginning and how
    much was left out."""
    text = json.dumps(value, default=str)
    if len(text) <= limit:
        return value
    return f"{text[:limit]}... ({len(text) - limit} more characters; --full shows all)"


@app.command("show")
def dlq_show(
    dead_letter_id: Annotated[int, typer.Argument(help=ID_HELP, parser=parse_id)],
    full: Annotated[
        bool, typer.Option("--full", help=f"Print data and metadata longer than {SHOW_LIMIT}.")
    ] = False,
) -> None:
    """Everything stored about one parked message, and the message itself."""

    async def work(_app: App, pool: asyncpg.Pool[Any]) -> dict[str, Any] | None:
        return await operations.parked_message(pool, dead_letter_id)

    row = common.with_pool(work, read_only=True)
    if row is None:
        raise WorkerError(f"no parked message with id {dead_letter_id}")
    if row["message"] is not None and not full:
        for key in ("data", "metadata"):
            row["message"][key] = _clip(row["message"][key], SHOW_LIMIT)
    typer.echo(json.dumps(row, default=str, indent=2))


@app.command("replay")
def dlq_replay(
    dead_letter_id: Annotated[int | None, typer.Argument(help=ID_HELP, parser=parse_id)] = None,
    consumer: Annotated[str | None, typer.Option(help="Consumer name.")] = None,
    stream: Annotated[str | None, typer.Option(help="Stream name.")] = None,
) -> None:
    """Re-dispatch a stream's parked messages in their original order and resume the stream.

    A message that fails again stays parked with its new error, and the command exits 1
    saying so.
    """

    async def work(app: App, pool: asyncpg.Pool[Any]) -> operations.Replayed:
        target = await operations.parked_target(pool, dead_letter_id, consumer, stream)
        consumer_name, stream_name = target
        settings = app.settings.worker
        domain = app.domain
        return await operations.replay(
            pool, app.database, settings, domain, consumer_name, stream_name
        )

    done = common.with_pool(work)
    if done.left is None:
        typer.echo(f"replayed {done.count} message(s) of {done.stream} in the running worker")
    else:
        typer.echo(f"replayed {done.count} message(s) of {done.stream}; {done.left} still parked")


@app.command("discard")
def dlq_discard(
    dead_letter_id: Annotated[int | None, typer.Argument(help=ID_HELP, parser=parse_id)] = None,
    consumer: Annotated[str | None, typer.Option(help="Consumer name.")] = None,
    stream: Annotated[str | None, typer.Option(help="Discard all of this stream.")] = None,
) -> None:
    """Drop a parked message (or all of a stream's) without handling it."""

    async def work(app: App, pool: asyncpg.Pool[Any]) -> str:
        if dead_letter_id is None:
            if consumer is None or stream is None:
                raise UsageError(NAMED)
            done = await operations.discard_stream(pool, app.domain, consumer, stream)
            return f"discarded {done} parked message(s)"
        row, left = await operations.discard_one(pool, dead_letter_id)
        if not left:
            return "discarded 1 parked message(s)"
        target = f"--consumer {row['consumer']} --stream {row['stream_name']}"
        return (
            f"discarded 1 parked message(s); {left} later message(s) of "
            f"{row['stream_name']} stay parked until replayed (`worker dlq replay {target}`) "
            f"or discarded (`worker dlq discard {target}`)"
        )

    typer.echo(common.with_pool(work))
