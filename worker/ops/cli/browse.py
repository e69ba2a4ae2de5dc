"""``worker events read|tail|show|history|trace``: the stream browser.

The store layer finds the messages (``worker.store.browser``, ``worker.store.causation``) and
``worker.ops.browser`` reads them with the application's code; this module only renders: Rich
on a terminal, one JSON document with ``--json`` (JSON lines for ``tail --follow``), and never
a cut value in a pipe (``output.console`` has no width there).
"""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer
from rich.json import JSON
from rich.text import Text
from rich.tree import Tree

from worker.engine.retry import is_transient
from worker.engine.wakeups import Listener, Waker
from worker.errors import (
    DatabaseUnavailableError,
    InvalidStreamNameError,
    MessageNotFoundError,
    UsageError,
)
from worker.ops import browser, outcome
from worker.ops.cli import common, output
from worker.store import browser as finder
from worker.store import causation, privileges
from worker.store.message_store import MessageStore
from worker.store.stream_name import check_category, check_stream_name

if TYPE_CHECKING:
    import asyncpg
    from rich.console import Console

    from worker.ops.app import App
    from worker.store.message import Message

JsonOption = Annotated[
    bool, typer.Option("--json", help="One JSON document on stdout, for scripts (no colours).")
]
MESSAGE_HELP = "A message's global position (a whole number) or its id (a UUID)."
# How long `tail --follow` waits for a notification before it looks anyway: the fallback for a
# store without the NOTIFY trigger, or a notification lost with its connection.
FOLLOW_POLL_SECONDS = 2.0


def register(app: typer.Typer) -> None:
    """Add the browser's commands to the ``worker events`` group."""
    app.command("read")(read)
    app.command("tail")(tail)
    app.command("show")(show)
    app.command("history")(history)
    app.command("trace")(trace)


def _with_pool(work: Any) -> Any:
    """``work(app, pool)`` on a pool that needs only the rights to read."""
    return common.with_pool(work, read_only=True, rights=privileges.READ)


def _checked(check: Any, name: str) -> str:
    """``name`` as ``check`` accepts it; a bad one is a usage error (exit 2)."""
    try:
        checked: str = check(name)
    except InvalidStreamNameError as error:
        raise UsageError(str(error)) from None
    return checked


def _print_json(document: Any) -> None:
    typer.echo(json.dumps(document, ensure_ascii=False, default=str))


# -- read and tail -----------------------------------------------------------------------------


def read(
    stream_name: Annotated[
        str, typer.Argument(metavar="STREAM", help="A stream: {category}-{id}.")
    ],
    start: Annotated[
        int, typer.Option("--from", min=0, help="The stream position to start at.")
    ] = 0,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=100_000, help="At most this many messages.")
    ] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Print a stream's messages in stream order (exit 1 when the stream has none)."""
    _checked(check_stream_name, stream_name)

    async def work(_app: App, pool: asyncpg.Pool[Any]) -> list[Message]:
        store = MessageStore(pool)
        if await store.stream_version(stream_name) is None:
            raise MessageNotFoundError(f"stream {stream_name!r} has no messages")
        return await store.read_stream(stream_name, start, limit)

    messages: list[Message] = _with_pool(work)
    if as_json:
        _print_json({"stream_name": stream_name, "messages": _jsons(messages)})
        return
    _print_table(messages)


def tail(
    category: Annotated[
        str,
        typer.Argument(
            metavar="CATEGORY", help="A category: the part of a stream name before '-'."
        ),
    ],
    limit: Annotated[
        int,
        typer.Option(
            "--limit", min=0, max=100_000, help="How many of the newest messages to print first."
        ),
    ] = 20,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep printing new messages as they are written, until Ctrl-C or SIGTERM "
            "(exit 0). With --json, one JSON line per message.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Print the newest messages of a category in global order (exit 1 when it has none,
    unless following)."""
    _checked(check_category, category)
    if follow:
        _follow(category, limit, as_json)
        return

    async def work(_app: App, pool: asyncpg.Pool[Any]) -> list[Message]:
        messages = await finder.newest(pool, category, limit)
        if not messages and await MessageStore(pool).category_head(category) is None:
            raise MessageNotFoundError(f"category {category!r} has no messages")
        return messages

    messages: list[Message] = _with_pool(work)
    if as_json:
        _print_json({"category": category, "messages": _jsons(messages)})
        return
    _print_table(messages)


def _jsons(messages: list[Message]) -> list[dict[str, Any]]:
    return [browser.message_json(m) for m in messages]


def _print_table(messages: list[Message]) -> None:
    table = output.table(
        "global", "stream", "pos", "type", "time", "data", names=("stream", "type", "data")
    )
    for m in messages:
        table.add_row(
            str(m.global_position),
            m.stream_name,
            str(m.position),
            m.type,
            m.time.isoformat(timespec="seconds"),
            m.data_json,
        )
    output.console().print(table)


def _follow(category: str, limit: int, as_json: bool) -> None:
    """``tail --follow``: the newest ``limit``, then every new message as it commits, woken by
    the NOTIFY trigger (polling every few seconds as the fallback), until a signal."""

    async def work(app: App, pool: asyncpg.Pool[Any]) -> None:
        waker = Waker()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, tg.cancel_scope)
                await tg.start(Listener(app.database, waker).run)
                await _print_new(pool, waker, category, limit, as_json)
        except* Exception as group:
            raise _one_error(group, category) from None

    _with_pool(work)
    raise typer.Exit(outcome.OK)


def _one_error(group: BaseExceptionGroup[Exception], category: str) -> BaseException:
    """What ended ``tail --follow`` with an error, as the one error the command line shows: a
    lost database (exit 1), else the error itself."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    if is_transient(error):
        return DatabaseUnavailableError(
            f"lost the connection to the database while following {category!r}: {error}"
        )
    return error


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _print_new(
    pool: asyncpg.Pool[Any], waker: Waker, category: str, limit: int, as_json: bool
) -> None:
    """Print the newest ``limit`` messages of ``category``, then each one written after them."""
    store = MessageStore(pool)
    mark = waker.mark(category)
    shown = await finder.newest(pool, category, limit) if limit else []
    head = shown[-1].global_position if shown else await store.category_head(category) or 0
    console = output.console()
    while True:
        for message in shown:
            _print_line(console, message, as_json)
            head = message.global_position
        sys.stdout.flush()
        if not shown:
            await waker.wait(category, seconds=FOLLOW_POLL_SECONDS, since=mark)
        mark = waker.mark(category)
        shown = await store.read_category(category, head + 1, 1000)


def _print_line(console: Console, message: Message, as_json: bool) -> None:
    if as_json:
        console.file.write(json.dumps(browser.message_json(message), ensure_ascii=False) + "\n")
        return
    console.print(
        f"#{message.global_position} {message.stream_name}@{message.position} {message.type} "
        f"{message.time.isoformat(timespec='seconds')} {message.data_json}"
    )


# -- show and history --------------------------------------------------------------------------


def show(
    key: Annotated[str, typer.Argument(metavar="GLOBAL_POSITION|MESSAGE_ID", help=MESSAGE_HELP)],
    as_json: JsonOption = False,
) -> None:
    """Print one message: its data and metadata, the schema version it was stored at and the
    version the current code's upcasters bring it to, with the data as the code reads it."""
    wanted = finder.message_key(key)

    async def work(app: App, pool: asyncpg.Pool[Any]) -> browser.MessageView:
        return browser.view(app.domain, await finder.find_message(pool, wanted))

    found: browser.MessageView = _with_pool(work)
    if as_json:
        _print_json(found.to_json())
        return
    _print_view(output.console(), found)


def _print_view(console: Console, found: browser.MessageView) -> None:
    m = found.message
    console.print(f"#{m['global_position']} {m['stream_name']}@{m['position']} {m['type']}")
    console.print(f"id {m['id']}, written {m['time']}")
    console.print(_versions(found))
    console.print("data:")
    console.print(JSON.from_data(m["data"]))
    if found.upcast is not None and found.stored_version != found.current_version:
        console.print(f"data as {found.event_class} v{found.current_version} reads it:")
        console.print(JSON.from_data(found.upcast))
    console.print("metadata:")
    console.print(JSON.from_data(m["metadata"]))


def _versions(found: browser.MessageView) -> str:
    stored = "none stated" if found.stored_version is None else f"v{found.stored_version}"
    if found.event_class is None:
        return f"schema version {stored}; no registered class reads type {found.message['type']}"
    line = f"schema version {stored}, read as {found.event_class} v{found.current_version}"
    if found.error is not None:
        return f"{line}: does not decode: {found.error}"
    if found.stored_version != found.current_version:
        return f"{line} (upcast)"
    return line


def history(
    aggregate: Annotated[
        str,
        typer.Argument(
            metavar="AGGREGATE", help="The aggregate: its class name or its stream category."
        ),
    ],
    ident: Annotated[str, typer.Argument(metavar="ID", help="The aggregate's id.")],
    as_json: JsonOption = False,
) -> None:
    """Print an aggregate's events and the state they fold to, loaded through its repository
    (exit 1 when there is no such aggregate)."""

    async def work(app: App, pool: asyncpg.Pool[Any]) -> browser.History:
        return await browser.history(app.domain, MessageStore(pool), aggregate, ident)

    found: browser.History = _with_pool(work)
    if as_json:
        _print_json(found.to_json())
        return
    console = output.console()
    console.print(f"{found.aggregate} {found.id} ({found.stream_name}), version {found.version}")
    for event in found.events:
        m = event.message
        console.print(f"@{m['position']} #{m['global_position']} {m['type']} {m['time']}")
        console.print(JSON.from_data(event.upcast if event.upcast is not None else m["data"]))
    console.print("state:")
    console.print(JSON.from_data(found.state))


# -- trace -------------------------------------------------------------------------------------


def trace(
    key: Annotated[str, typer.Argument(metavar="MESSAGE_ID|GLOBAL_POSITION", help=MESSAGE_HELP)],
    limit: Annotated[
        int,
        typer.Option("--limit", min=1, max=1_000_000, help="At most this many messages each way."),
    ] = causation.DEFAULT_LIMIT,
    as_json: JsonOption = False,
) -> None:
    """Print a message's causation tree: what caused it, up to the root, and everything it
    caused, across categories, in global order."""
    wanted = finder.message_key(key)

    async def work(_app: App, pool: asyncpg.Pool[Any]) -> causation.CausationTree:
        return await causation.trace(pool, wanted, limit=limit)

    found: causation.CausationTree = _with_pool(work)
    if as_json:
        _print_json(found.to_json())
        return
    console = output.console()
    if found.missing_cause is not None:
        console.print(f"caused by a message the store does not hold: {_cause(found.missing_cause)}")
    console.print(_tree(found))
    if found.truncated:
        console.print(f"the trace stopped at {limit} messages (--limit)")


def _tree(found: causation.CausationTree) -> Tree:
    top = Tree(_label(found.root, found.focus))
    branches = [(top, found.root)]
    while branches:
        branch, node = branches.pop()
        for child in node.children:
            branches.append((branch.add(_label(child, found.focus)), child))
    return top


def _label(node: causation.CausationNode, focus: int) -> Text:
    m = node.message
    text = Text(f"#{m.global_position} {m.type} {m.stream_name}@{m.position} {m.time}")
    if m.global_position == focus:
        text.stylize("bold")
        text.append("  <- this message")
    return text


def _cause(cause: causation.Cause) -> str:
    if cause.global_position is not None:
        return f"global position {cause.global_position}"
    if cause.stream_name is not None:
        return f"{cause.stream_name}@{cause.position}"
    return f"Protean id {cause.protean_id}"
