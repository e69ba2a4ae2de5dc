"""``worker dlq``: list, show, replay and discard parked messages."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer

from worker.engine import dead_letters
from worker.engine.factory import build_consumer
from worker.errors import ReplayFailedError, UsageError, WorkerError
from worker.ops.cli import common, output
from worker.store import queries as store_queries

if TYPE_CHECKING:
    import asyncpg

    from worker.ops.app import App

# Seconds `dlq replay` waits for a running worker to replay a stream it was asked to.
REPLAY_WAIT = 60.0

app = typer.Typer(help="Parked messages (dead letters).", no_args_is_help=True)

ID_HELP = "A parked message's id (`worker dlq list` shows them)."
parse_id = common.whole_number("a parked message's id")
NAMED = "give a parked message id, or both --consumer and --stream"


async def _check_consumer(app: App, pool: asyncpg.Pool[Any], name: str | None) -> None:
    """``UsageError`` (exit 2) listing the known consumers when ``name`` is none of the
    domain's and has no parked messages (a consumer since removed from the code may)."""
    known = sorted(slot.name for s in app.domain.subscribers for slot in s.slots())
    if name is None or name in known or name in await dead_letters.counts(pool):
        return
    raise UsageError(f"no consumer named {name!r}; known: {', '.join(known) or 'none'}")


@app.command("list")
def dlq_list(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer.")] = None,
    stream: Annotated[str | None, typer.Option(help="Only this stream.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines for scripts.")] = False,
) -> None:
    """List parked messages, oldest first per consumer."""

    async def work(app: App, pool: asyncpg.Pool[Any]) -> list[dict[str, Any]]:
        await _check_consumer(app, pool, consumer)
        return await dead_letters.list_parked(pool, consumer, stream)

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
        row = await dead_letters.show(pool, dead_letter_id)
        if row is not None:
            message = await pool.fetchrow(store_queries.MESSAGE_BODY, row["global_position"])
            row["message"] = None if message is None else dict(message)
        return row

    row = common.with_pool(work, read_only=True)
    if row is None:
        raise WorkerError(f"no parked message with id {dead_letter_id}")
    if row["message"] is not None and not full:
        for key in ("data", "metadata"):
            row["message"][key] = _clip(row["message"][key], SHOW_LIMIT)
    typer.echo(json.dumps(row, default=str, indent=2))


def _target(
    row: dict[str, Any] | None, consumer: str | None, stream: str | None
) -> tuple[str, str]:
    if row is not None:
        return row["consumer"], row["stream_name"]
    if consumer is None or stream is None:
        raise UsageError(NAMED)
    return consumer, stream


async def _replay(app: App, pool: asyncpg.Pool[Any], consumer_name: str, stream: str) -> str:
    """Replay under the consumer's lease: inline when free, else by the process that holds it."""
    matches = [
        slot
        for subscriber in app.domain.subscribers
        for slot in subscriber.slots()
        if slot.name == consumer_name
    ]
    if not matches:
        known = sorted(slot.name for s in app.domain.subscribers for slot in s.slots())
        raise UsageError(f"no consumer named {consumer_name!r}; known: {', '.join(known)}")
    slot = matches[0]
    consumer = build_consumer(slot, dsn=app.dsn, pool=pool, settings=app.settings.worker)
    if await consumer.lease.try_acquire():
        try:
            done = await consumer.replay(stream)
        finally:
            await consumer.lease.release()
        left = await dead_letters.parked_of_stream(pool, consumer_name, stream)
        return f"replayed {done} message(s) of {stream}; {len(left)} still parked"
    marked = await dead_letters.request_replay(pool, consumer_name, stream)
    await _await_replay(pool, consumer_name, stream)
    return f"replayed {marked} message(s) of {stream} in the running worker"


async def _await_replay(
    pool: asyncpg.Pool[Any], consumer_name: str, stream: str, within: float = REPLAY_WAIT
) -> None:
    """Wait until the process holding the consumer has replayed the stream (nothing of it is
    parked) or failed (the request is withdrawn: ``ReplayFailedError`` with the new error)."""
    with anyio.move_on_after(within):
        # Another process does the work: its progress is only visible in the database.
        while (state := await dead_letters.replay_state(pool, consumer_name, stream)) is not None:
            if not state.requested:
                raise ReplayFailedError(consumer_name, stream, state.position, state.error)
            await anyio.sleep(0.2)
        return
    raise WorkerError(
        f"replay of {stream} requested, but the worker holding consumer {consumer_name} has "
        f"not done it within {within:.0f} s; it will when it gets to it (see `worker status`)"
    )


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

    async def work(app: App, pool: asyncpg.Pool[Any]) -> str:
        row = None if dead_letter_id is None else await dead_letters.show(pool, dead_letter_id)
        if dead_letter_id is not None and row is None:
            raise WorkerError(f"no parked message with id {dead_letter_id}")
        consumer_name, stream_name = _target(row, consumer, stream)
        return await _replay(app, pool, consumer_name, stream_name)

    typer.echo(common.with_pool(work))


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
            await _check_consumer(app, pool, consumer)
            done = await dead_letters.discard(pool, consumer=consumer, stream_name=stream)
            return f"discarded {done} parked message(s)"
        row = await dead_letters.show(pool, dead_letter_id)
        if row is None or not await dead_letters.discard(pool, dead_letter_id=dead_letter_id):
            raise WorkerError(f"no parked message with id {dead_letter_id}")
        left = await dead_letters.parked_of_stream(pool, row["consumer"], row["stream_name"])
        if not left:
            return "discarded 1 parked message(s)"
        target = f"--consumer {row['consumer']} --stream {row['stream_name']}"
        return (
            f"discarded 1 parked message(s); {len(left)} later message(s) of "
            f"{row['stream_name']} stay parked until replayed (`worker dlq replay {target}`) "
            f"or discarded (`worker dlq discard {target}`)"
        )

    typer.echo(common.with_pool(work))
