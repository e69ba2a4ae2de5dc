"""The stream browser, `worker events read|tail|show|history|trace`, run as an operator runs
it: on the shop example (a placed order that is confirmed and shipped, whose shipment the
notifier turns into a command), on an application with an upcast event, and on messages in
Protean's layout."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest

import domain as shop
import handlers  # noqa: F401  (registers the shipment notifier on the shop domain)
from tests.cli import EXAMPLE_APP, ROOT, Result, as_user, worker
from tests.integration.proxy import Proxy
from worker import NewMessage
from worker.store.layout import Outgoing
from worker.store.protean import ProteanConventions

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream, Process

    from worker import MessageStore
    from worker.store.message import Message

pytestmark = pytest.mark.anyio

NOTES_APP = Path(__file__).parent / "browse_app" / "domain.toml"


async def events(dsn: str, *args: str, config: Path = EXAMPLE_APP) -> Result:
    """``worker events ARGS`` on ``dsn``."""
    return await worker(dsn, "events", *args, config=config)


async def shipped_order(store: MessageStore, dsn: str) -> tuple[str, list[Message]]:
    """An order placed, then confirmed and shipped as caused by its placing, and the worker
    run until caught up (so the notifier has written its command). The order's id and its
    messages in global order (placed, confirmed, shipped, the command)."""
    repository = shop.domain.repository_for(shop.Order, store)
    item = shop.OrderItem(product_id="p1", quantity=2, price=Decimal("3.50"))
    order = shop.Order.place("Ada", [item])
    await repository.add(order)
    stream = f"order-{order.id}"
    (placed,) = await store.read_stream(stream)
    loaded = await repository.get(order.id)
    loaded.confirm()
    loaded.ship("T-1")
    await repository.add(loaded, cause=placed)
    ran = await worker(dsn, "run", "--until-caught-up", config=EXAMPLE_APP)
    assert ran.code == 0, ran
    command = await store.read_stream(f"notification:command-{order.id}")
    return order.id, [*await store.read_stream(stream), *command]


async def test_trace_of_an_order_placed_shows_what_it_set_off_in_order(
    store: MessageStore, database_dsn: str
) -> None:
    """Tracing the OrderPlaced message shows what its placing caused, in global order: the
    order's later events, with below the shipment the notification command the handler wrote,
    and the fulfillment process's ReserveStock command, each in another category."""
    _, (placed, confirmed, shipped, command) = await shipped_order(store, database_dsn)
    result = await events(database_dsn, "trace", str(placed.global_position), "--json")
    assert result.code == 0, result
    tree = json.loads(result.stdout)
    assert tree["focus"] == placed.global_position and tree["missing_cause"] is None
    root = tree["root"]
    assert root["type"] == "OrderPlaced" and root["id"] == placed.id
    caused = root["caused"]
    assert [c["type"] for c in caused] == ["OrderConfirmed", "OrderShipped", "ReserveStock"]
    assert [c["global_position"] for c in caused[:2]] == [
        confirmed.global_position,
        shipped.global_position,
    ]
    assert caused[2]["stream_name"].startswith("inventory:command-")
    (notification,) = root["caused"][1]["caused"]
    assert notification["type"] == "SendShipmentNotification"
    assert notification["stream_name"] == command.stream_name and notification["caused"] == []

    printed = await events(database_dsn, "trace", str(placed.global_position))
    assert printed.code == 0, printed
    rows = [line for line in printed.stdout.splitlines() if "#" in line]
    assert [r.split("#", 1)[1].split()[1] for r in rows][:5] == [
        "OrderPlaced",
        "OrderConfirmed",
        "OrderShipped",
        "SendShipmentNotification",
        "ReserveStock",
    ], printed
    depth = [r.index("#") for r in rows]
    assert depth[0] < depth[1] == depth[2] == depth[4] < depth[3], printed
    # (The inventory desk may have answered ReserveStock in the same run: below it, deeper.)
    assert all(d > depth[4] for d in depth[5:]), printed
    assert "this message" in rows[0], printed


async def test_trace_of_a_command_by_its_id_climbs_to_the_order_placed(
    store: MessageStore, database_dsn: str
) -> None:
    """Traced by its message id, the notification command shows its causes up to the root:
    OrderPlaced, then the shipment, then the command itself (the confirmation, no cause of it,
    is left out)."""
    _, (placed, _, shipped, command) = await shipped_order(store, database_dsn)
    result = await events(database_dsn, "trace", command.id, "--json")
    assert result.code == 0, result
    tree = json.loads(result.stdout)
    assert tree["focus"] == command.global_position
    root = tree["root"]
    assert root["global_position"] == placed.global_position
    assert [c["global_position"] for c in root["caused"]] == [shipped.global_position]
    assert root["caused"][0]["caused"][0]["id"] == command.id


async def test_read_prints_a_stream_in_order_from_a_position(
    store: MessageStore, database_dsn: str
) -> None:
    """`read` prints the stream's messages in stream order; `--from` and `--limit` choose a
    part; the table holds the same messages."""
    order_id, (placed, confirmed, shipped, _) = await shipped_order(store, database_dsn)
    stream = f"order-{order_id}"
    whole = await events(database_dsn, "read", stream, "--json")
    assert whole.code == 0, whole
    document = json.loads(whole.stdout)
    assert document["stream_name"] == stream
    assert [m["type"] for m in document["messages"]] == [
        "OrderPlaced",
        "OrderConfirmed",
        "OrderShipped",
    ]
    assert document["messages"][0]["data"] == placed.data
    assert document["messages"][1]["metadata"]["causationMessageGlobalPosition"] == (
        placed.global_position
    )
    part = await events(database_dsn, "read", stream, "--from", "1", "--limit", "1", "--json")
    assert [m["id"] for m in json.loads(part.stdout)["messages"]] == [confirmed.id], part
    table = await events(database_dsn, "read", stream)
    assert table.code == 0, table
    positions = [line.split()[1] for line in table.stdout.splitlines() if stream in line]
    assert positions == [str(m.global_position) for m in (placed, confirmed, shipped)], table


async def test_history_folds_to_the_state_the_repository_loads(
    store: MessageStore, database_dsn: str
) -> None:
    """`history Order ID` lists the order's events and the state they fold to, the same state
    the repository loads; the aggregate may be named by its stream category too."""
    order_id, _ = await shipped_order(store, database_dsn)
    loaded = await shop.domain.repository_for(shop.Order, store).get(order_id)
    result = await events(database_dsn, "history", "Order", order_id, "--json")
    assert result.code == 0, result
    found = json.loads(result.stdout)
    assert found["state"] == loaded.model_dump(mode="json")
    assert found["state"]["status"] == "SHIPPED" and found["version"] == loaded.version == 3
    assert [e["type"] for e in found["events"]] == [
        "OrderPlaced",
        "OrderConfirmed",
        "OrderShipped",
    ]
    by_category = await events(database_dsn, "history", "order", order_id)
    assert by_category.code == 0, by_category
    assert '"status": "SHIPPED"' in by_category.stdout, by_category


async def test_tail_prints_the_newest_messages_of_a_category(
    store: MessageStore, database_dsn: str
) -> None:
    """`tail` prints the newest messages of a category, oldest of them first."""
    for n in range(5):
        await store.write(f"jot-{n % 2}", NewMessage("Jotted", {"n": n}))
    result = await events(database_dsn, "tail", "jot", "--limit", "3", "--json")
    assert result.code == 0, result
    document = json.loads(result.stdout)
    assert [m["data"]["n"] for m in document["messages"]] == [2, 3, 4]
    table = await events(database_dsn, "tail", "jot", "--limit", "2")
    assert table.code == 0, table
    assert [
        word for line in table.stdout.splitlines() for word in line.split() if word[:4] == "jot-"
    ] == ["jot-1", "jot-0"], table


async def start_tail(dsn: str, *args: str) -> Process:
    """`worker events tail ARGS` running, its stdout piped."""
    environment = {**os.environ, "WORKER_EVENT_STORE__DATABASE_URI": dsn}
    command = [sys.executable, "-m", "worker", "--config", str(EXAMPLE_APP), "events", "tail"]
    return await anyio.open_process([*command, *args], env=environment, cwd=ROOT)


async def next_line(process: Process, pending: bytearray) -> str:
    """The next line the process prints (within a minute)."""
    assert process.stdout is not None
    with anyio.fail_after(60):
        while b"\n" not in pending:
            pending.extend(await process.stdout.receive())
    line, _, rest = bytes(pending).partition(b"\n")
    pending[:] = rest
    return line.decode()


async def rest_of(stream: ByteReceiveStream | None) -> str:
    """Everything left to read on a finished process's ``stream``."""
    assert stream is not None
    received = bytearray()
    with contextlib.suppress(anyio.EndOfStream):
        while True:
            received.extend(await stream.receive())
    return received.decode()


async def test_tail_follow_prints_a_message_written_after_it_started_and_ends_on_sigterm(
    store: MessageStore, database_dsn: str
) -> None:
    """`tail --follow --json` prints the newest message, then one written after it started, as
    a JSON line each, and ends on SIGTERM with exit code 0."""
    await store.write("watch-1", NewMessage("Seen", {"n": 1}))
    process = await start_tail(database_dsn, "watch", "--follow", "--json", "--limit", "1")
    pending = bytearray()
    try:
        first = json.loads(await next_line(process, pending))
        assert first["data"] == {"n": 1}
        await store.write("watch-2", NewMessage("Seen", {"n": 2}))
        second = json.loads(await next_line(process, pending))
        assert (second["stream_name"], second["data"]) == ("watch-2", {"n": 2})
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(60):
            code = await process.wait()
        assert code == 0
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()


async def test_tail_follow_that_loses_the_database_says_so_in_one_line_and_exits_1(
    store: MessageStore, database_dsn: str
) -> None:
    """When the database goes away under `tail --follow`, it ends with exit code 1 and, as its
    last line, the error saying it lost the database (not a traceback)."""
    await store.write("gone-1", NewMessage("Seen", {"n": 1}))
    proxy = Proxy(database_dsn)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        process = await start_tail(proxy.dsn, "gone", "--follow", "--json", "--limit", "1")
        pending = bytearray()
        try:
            assert json.loads(await next_line(process, pending))["data"] == {"n": 1}
            proxy.cut()
            with anyio.fail_after(60):
                code = await process.wait()
            stderr = await rest_of(process.stderr)
            assert code == 1, stderr
            last = stderr.strip().splitlines()[-1]
            assert last.startswith(
                "worker: error: lost the connection to the database while following 'gone'"
            ), stderr
        finally:
            if process.returncode is None:
                process.kill()
            await process.aclose()
            tg.cancel_scope.cancel()


async def test_show_upcasts_an_old_message_and_says_both_versions(
    store: MessageStore, database_dsn: str
) -> None:
    """`show` of a message stored at schema version 1 of an event now at version 2 shows the
    stored data and the data as the upcaster makes it, with both versions."""
    await store.write("note-1", NewMessage("Noted", {"text": "three small words"}))
    (old,) = await store.read_stream("note-1")
    result = await events(
        database_dsn, "show", str(old.global_position), "--json", config=NOTES_APP
    )
    assert result.code == 0, result
    shown = json.loads(result.stdout)
    assert (shown["stored_version"], shown["current_version"]) == (1, 2)
    assert shown["data"] == {"text": "three small words"}
    assert shown["upcast"] == {"body": "three small words", "words": 3}
    assert shown["event_class"] == "Noted" and shown["error"] is None
    printed = await events(database_dsn, "show", old.id, config=NOTES_APP)
    assert printed.code == 0, printed
    assert "schema version v1, read as Noted v2 (upcast)" in printed.stdout, printed
    assert '"words": 3' in printed.stdout, printed


def protean_message(
    stream: str, type_name: str, data: dict[str, Any], position: int, cause: Message | None
) -> NewMessage:
    """A message laid out as Protean 0.18 writes it (following ``cause``)."""
    ident = str(uuid.uuid4())
    out = Outgoing(type_name, data, stream, f"shop.{type_name}", 1, ident, position)
    return ProteanConventions().message(out, None, cause)


async def test_show_and_trace_a_message_in_proteans_layout(
    store: MessageStore, database_dsn: str
) -> None:
    """A message in Protean's layout is shown with its envelope, the schema version its type
    names, and its causation followed by Protean's ids (domain.causation_id, headers.id)."""
    category = "shop::cart"
    first = protean_message(f"{category}-c1", "Shop.CartOpened.v1", {"cart": "c1"}, 0, None)
    await store.write(f"{category}-c1", first)
    (opened,) = await store.read_stream(f"{category}-c1")
    second = protean_message(f"{category}-c1", "Shop.ItemAdded.v1", {"sku": "a"}, 1, opened)
    await store.write(f"{category}-c1", second)
    _, added = await store.read_stream(f"{category}-c1")
    assert added.metadata is not None
    assert added.metadata["domain"]["causation_id"] == f"{category}-c1-0"

    shown = await events(database_dsn, "show", str(added.global_position), "--json")
    assert shown.code == 0, shown
    document = json.loads(shown.stdout)
    assert document["metadata"]["headers"]["type"] == "Shop.ItemAdded.v1"
    assert document["stored_version"] == 1 and document["event_class"] is None
    printed = await events(database_dsn, "show", str(added.global_position))
    assert "no registered class reads type Shop.ItemAdded.v1" in printed.stdout, printed
    assert '"causation_id": "shop::cart-c1-0"' in printed.stdout, printed

    down = json.loads((await events(database_dsn, "trace", opened.id, "--json")).stdout)
    assert [c["id"] for c in down["root"]["caused"]] == [added.id]
    up = json.loads((await events(database_dsn, "trace", added.id, "--json")).stdout)
    assert up["root"]["id"] == opened.id and up["focus"] == added.global_position


async def test_output_in_a_pipe_is_never_cut(store: MessageStore, database_dsn: str) -> None:
    """Piped, long stream names and values are printed whole by every command."""
    stream = "longwinded_category_name_for_the_pipe-" + "0f8fad5b-d9cb-469f-a165-70867728950e" * 3
    value = "word " * 300
    await store.write(stream, NewMessage("ALongMessageTypeNameThatGoesOnAndOn", {"text": value}))
    (message,) = await store.read_stream(stream)
    for args in (
        ("read", stream),
        ("tail", "longwinded_category_name_for_the_pipe"),
        ("show", str(message.global_position)),
        ("trace", str(message.global_position)),
    ):
        result = await events(database_dsn, *args)
        assert result.code == 0, result
        assert stream in result.stdout, result
        assert "…" not in result.stdout, result
        if args[0] != "trace":
            assert value.strip() in result.stdout, result


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (("show", "42"), 1, "no message at global position 42 in the store"),
        (
            ("show", "12345678-1234-1234-1234-123456789012"),
            1,
            "no message with id 12345678-1234-1234-1234-123456789012 in the store",
        ),
        (
            ("trace", "not-an-id"),
            2,
            "message 'not-an-id' is neither a global position (a whole number from 1) "
            "nor a message id (a UUID)",
        ),
        (("read", "order-none"), 1, "stream 'order-none' has no messages"),
        (
            ("read", "order"),
            2,
            "stream name 'order' has no id: expected '{category}-{id}' (this is a category)",
        ),
        (("tail", "nothing"), 1, "category 'nothing' has no messages"),
        (
            ("tail", "order-1"),
            2,
            "category 'order-1' contains '-': that is a stream name; its category is 'order'",
        ),
        (
            ("history", "Basket", "1"),
            2,
            "no aggregate 'Basket' in domain 'shop' (known: Book, Order, Payment, Reservation)",
        ),
        (("history", "Order", "none"), 1, "Order 'none' does not exist"),
    ],
)
async def test_bad_input_is_one_line_and_its_exit_code(
    database_dsn: str, args: tuple[str, ...], code: int, line: str
) -> None:
    """An unknown stream, message or aggregate, or a malformed name or id: one line on stderr
    saying what, and exit code 1 (not found) or 2 (usage)."""
    result = await events(database_dsn, *args)
    assert result.code == code, result
    assert result.errors == [f"worker: error: {line}"], result


async def test_a_database_that_is_down_is_one_line(database_dsn: str) -> None:
    """With the server unreachable, a browser command says so in one line and exits 1."""
    result = await events("postgresql://postgres@127.0.0.1:1/nowhere", "show", "1")
    assert result.code == 1, result
    assert len(result.errors) == 1, result
    assert result.errors[0].startswith("worker: error: cannot connect to PostgreSQL"), result


async def test_install_creates_the_causation_indexes_on_an_existing_install(
    database_dsn: str,
) -> None:
    """A database installed before migration 0007 (here: its indexes dropped and the migration
    unrecorded) gets the causation indexes from `worker db install`; a fresh install has them."""
    names = ("worker_causation_global_position", "worker_protean_causation_id")
    names += ("worker_protean_message_id",)
    conn = await asyncpg.connect(database_dsn)
    try:
        listed = "SELECT indexname FROM pg_indexes WHERE schemaname = 'message_store' ORDER BY 1"
        fresh = {r[0] for r in await conn.fetch(listed)}
        assert set(names) <= fresh
        for name in names:
            await conn.execute(f"DROP INDEX message_store.{name}")
        await conn.execute("DELETE FROM worker.migrations WHERE version = 7")
        installed = await worker(database_dsn, "db", "install", config=EXAMPLE_APP)
        assert installed.code == 0, installed
        assert "0007_causation_indexes" in installed.stdout, installed
        assert set(names) <= {r[0] for r in await conn.fetch(listed)}
    finally:
        await conn.close()


async def test_install_names_the_table_ownership_the_indexes_need(
    database_dsn: str, role: str
) -> None:
    """A role that may migrate the worker schema but does not own MessageDB's table is told,
    in one line and before anything changes, that the causation indexes need its ownership."""
    conn = await asyncpg.connect(database_dsn)
    try:
        for name in ("worker_causation_global_position", "worker_protean_causation_id"):
            await conn.execute(f"DROP INDEX message_store.{name}")
        await conn.execute("DELETE FROM worker.migrations WHERE version = 7")
        await conn.execute(f"ALTER SCHEMA worker OWNER TO {role}")
        await conn.execute(f"ALTER TABLE worker.migrations OWNER TO {role}")
        await conn.execute(f"GRANT USAGE ON SCHEMA message_store TO {role}")
        await conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")  # (the read models')
        installed = await worker(as_user(database_dsn, role), "db", "install", config=EXAMPLE_APP)
        assert installed.code == 1, installed
        assert len(installed.errors) == 1, installed
        line = installed.errors[0]
        assert line.startswith(f'worker: error: role "{role}" cannot run `worker db install`')
        assert "ownership of message_store.messages (to create the causation indexes)" in line
        assert await conn.fetchval("SELECT count(*) FROM worker.migrations WHERE version = 7") == 0
    finally:
        await conn.execute("ALTER SCHEMA worker OWNER TO CURRENT_USER")
        await conn.execute("ALTER TABLE worker.migrations OWNER TO CURRENT_USER")
        await conn.close()


async def test_the_worker_schema_owner_migrates_it_without_create_on_the_database(
    database_dsn: str, role: str
) -> None:
    """A role that owns the worker schema (and may create read-model tables) but may not create
    schemas in the database applies a pending migration: the schema is created only when it is
    missing (CREATE SCHEMA IF NOT EXISTS would need CREATE on the database even when it is
    there)."""
    conn = await asyncpg.connect(database_dsn)
    try:
        await conn.execute("DROP TABLE worker.deadlines")
        await conn.execute("DELETE FROM worker.migrations WHERE version = 8")
        await conn.execute(f"ALTER SCHEMA worker OWNER TO {role}")
        for (table,) in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'worker'"
        ):
            await conn.execute(f"ALTER TABLE worker.{table} OWNER TO {role}")
        await conn.execute(f"GRANT USAGE ON SCHEMA message_store TO {role}")
        await conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
        installed = await worker(as_user(database_dsn, role), "db", "install", config=EXAMPLE_APP)
        assert installed.code == 0, installed
        assert "0008_deadlines" in installed.stdout, installed
        assert await conn.fetchval("SELECT to_regclass('worker.deadlines')") is not None
    finally:
        await conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
        await conn.close()
