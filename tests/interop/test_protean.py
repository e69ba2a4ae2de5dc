"""A Protean 0.18 application and this worker on one MessageDB, in both directions.

``protean_app.py`` is the seed's shop written with Protean (``protean[message-db]==0.18.0``, the
``protean`` extra), run in a process of its own; ``worker_app.py`` is the same shop in this
library's style, each class declared once under ``conventions="protean"``. Each test has a fresh
database with MessageDB installed.

Without Protean installed these tests are skipped, or fail where ``WORKER_PROTEAN_CHECKS=required``
(CI, which installs the extra with ``make setup``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.interop.worker_app import Book, BookRow, Order, OrderRow, ShipOrder, shop
from worker import BaseEvent, Domain, ProcessManager, handle
from worker.store.protean import camel_case_name, checksum, normalized_name, underscore

if TYPE_CHECKING:
    import asyncpg

    from worker import Context, MessageStore
    from worker.store.message import Message

pytestmark = [pytest.mark.anyio, pytest.mark.protean]

APP = Path(__file__).with_name("protean_app.py")
PROTEAN_VERSION = "0.18.0"


@pytest.fixture(autouse=True)
def protean_installed() -> None:
    """Protean 0.18 must be importable by the interpreter running the tests."""
    problem = None
    if importlib.util.find_spec("protean") is None:
        problem = "Protean is not installed: pip install -e '.[protean]'"
    elif (found := importlib.metadata.version("protean")) != PROTEAN_VERSION:
        problem = f"Protean {found} is installed; these tests are for {PROTEAN_VERSION}"
    if problem is None:
        return
    if os.environ.get("WORKER_PROTEAN_CHECKS") == "required":
        pytest.fail(f"{problem} (WORKER_PROTEAN_CHECKS=required)")
    pytest.skip(problem)


async def protean(*args: str) -> Any:
    """Run the Protean application once; its JSON answer."""
    done = await anyio.run_process([sys.executable, str(APP), *args], check=False)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"protean_app {args[0]} failed:\n{stderr[-6000:]}"
    return json.loads(stdout.strip().splitlines()[-1])


def seen(answer: dict[str, Any], handler: str, type_name: str) -> list[dict[str, Any]]:
    return [s for s in answer["seen"] if s["handler"] == handler and s["type"] == type_name]


async def test_protean_names_domains_and_aggregates_as_this_library_does() -> None:
    names = ["shop", "Shop", "my_domain", "My Domain 1.0", "Bank-Account", "Café", "OrderItem"]
    classes = ["Order", "OrderItem", "HTTPServer", "IOError", "Book"]
    answer = await protean("names", *names, *classes)
    for name in names:
        assert answer[name]["camel_case_name"] == camel_case_name(name), name
        assert answer[name]["normalized_name"] == normalized_name(name), name
    for name in classes:
        assert answer[name]["underscore"] == underscore(name), name


async def test_events_written_by_protean_are_projected_and_loaded_by_the_worker(
    database_dsn: str, store: MessageStore, pool: asyncpg.Pool[Any], run_until_caught_up: Any
) -> None:
    """Protean writes orders (one shipped and snapshotted, one confirmed by a command through
    its own engine) and a book saved twice; the worker's projections, declared once with no
    aliases or categories, fold them, and its repository loads the orders (from Protean's
    snapshot where there is one)."""
    history = await protean("history", database_dsn)
    a, b = history["orders"]["A"], history["orders"]["B"]

    await run_until_caught_up(shop, "interop_orders", "interop_books")

    rows = {row.order_id: row for row in await OrderRow.find(pool)}
    assert {k: (r.customer_name, r.status, r.tracking, r.events) for k, r in rows.items()} == {
        a: ("Alice", "SHIPPED", "T-A", 3),
        b: ("Bob", "CONFIRMED", None, 2),
    }
    [book] = await BookRow.find(pool)
    assert (book.book_id, book.title, book.author, book.saves) == (
        history["book"],
        "Dune Messiah",
        "Frank Herbert",
        2,
    )

    orders = shop.repository_for(Order, store)
    shipped = await orders.get(a)
    assert (shipped.status, shipped.tracking, shipped.version) == ("SHIPPED", "T-A", 3)
    assert shipped._snapshot_version == 3  # Protean's SNAPSHOT, read as it wrote it
    confirmed = await orders.get(b)
    assert (confirmed.status, confirmed.version) == ("CONFIRMED", 2)
    [by_command] = [
        m for m in await store.read_stream(f"shop::order-{b}") if m.type.endswith("Confirmed.v1")
    ]
    assert shop.schema_version(by_command) == 1
    assert by_command.metadata["domain"]["causation_id"] == b  # type: ignore[index]


async def test_what_the_worker_writes_protean_loads_and_handles(
    database_dsn: str, store: MessageStore, pool: asyncpg.Pool[Any], run_until_caught_up: Any
) -> None:
    """The worker writes an order (events and a snapshot), a book (fact events and a domain
    event) and, from a handler, a ``ShipOrder`` command. Protean's ``repo.get`` loads the order,
    Protean's engine handles the events, fact events and the command (shipping the order), and
    the worker then projects the event Protean wrote."""
    orders = shop.repository_for(Order, store)
    order = Order.place("Xavier")
    order.confirm()
    await orders.add(order)  # two events: a snapshot is due (threshold 2)
    books = shop.repository_for(Book, store)
    book = Book(title="Emma", author="Jane Austen")
    await books.add(book)
    book.title = "Emma (2nd ed.)"
    book.publish()
    await books.add(book)
    await run_until_caught_up(shop, "shipping")  # writes ShipOrder to shop::order:command-{id}
    [command] = await store.read_category("shop::order:command")

    loaded = await protean("load", database_dsn, order.id)
    assert loaded[order.id] == {
        "id": order.id,
        "customer_name": "Xavier",
        "status": "CONFIRMED",
        "tracking": None,
        "_version": 1,
    }

    handled = await protean("engine", database_dsn)
    assert [s["data"]["customer_name"] for s in seen(handled, "OrderEvents", "Shop.OrderPlaced.v1")]
    assert [s["id"] for s in seen(handled, "OrderEvents", "Shop.OrderConfirmed.v1")] == [
        f"shop::order-{order.id}-1"
    ]
    [ship] = seen(handled, "OrderCommands", "Shop.ShipOrder.v1")
    assert (ship["kind"], ship["id"], ship["causation_id"]) == (
        "COMMAND",
        order.id,
        f"shop::order-{order.id}-1",
    )
    [shipped] = seen(handled, "OrderEvents", "Shop.OrderShipped.v1")
    assert shipped["causation_id"] == order.id  # the command's id, as Protean names it
    assert shipped["correlation_id"] == command.metadata["domain"]["correlation_id"]  # type: ignore[index]
    assert [s["data"]["title"] for s in seen(handled, "BookEvents", "Shop.BookFactEvent.v1")] == [
        "Emma",
        "Emma (2nd ed.)",
    ]
    assert [s["data"] for s in seen(handled, "BookEvents", "Shop.BookPublished.v1")] == [
        {"book_id": book.id, "title": "Emma (2nd ed.)"}
    ]

    after = await protean("load", database_dsn, order.id)
    assert (after[order.id]["status"], after[order.id]["_version"]) == ("SHIPPED", 2)
    await run_until_caught_up(shop, "interop_orders", "interop_books")
    row = await OrderRow.get(pool, order.id)
    assert row is not None and (row.status, row.tracking, row.events) == (
        "SHIPPED",
        ship["data"]["tracking"],
        3,
    )
    again = await orders.get(order.id)
    assert (again.status, again.version, again._snapshot_version) == ("SHIPPED", 3, 2)
    [book_row] = await BookRow.find(pool)
    assert (book_row.title, book_row.saves) == ("Emma (2nd ed.)", 2)


def keys(value: Any) -> Any:
    """The nested key structure of a JSON value (dict keys, recursively)."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    return None


def fixed(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata fields that do not depend on ids, times or the cause."""
    domain, headers = meta["domain"], meta["headers"]
    return {
        "kind": domain["kind"],
        "version": domain["version"],
        "sequence_id": domain["sequence_id"],
        "expected_version": domain["expected_version"],
        "asynchronous": domain["asynchronous"],
        "priority": domain["priority"],
        "stream_category": domain["stream_category"],
        "specversion": meta["envelope"]["specversion"],
        "event_store": meta["event_store"],
        "type": headers["type"],
        "traceparent": headers["traceparent"],
        "idempotency_key": headers["idempotency_key"],
        "deadline": headers["deadline"],
    }


async def test_the_layout_is_protean_s_message_for_message(
    database_dsn: str, store: MessageStore
) -> None:
    """The same history written by Protean and by the worker: every message type has the same
    metadata structure and the same values wherever ids, times and causes play no part."""
    history = await protean("history", database_dsn)
    theirs = {history["orders"]["A"], history["orders"]["B"], history["book"]}

    orders = shop.repository_for(Order, store)
    order = Order.place("Alice")
    await orders.add(order)
    order.confirm()
    await orders.add(order)
    order.ship("T-A")
    await orders.add(order)
    books = shop.repository_for(Book, store)
    book = Book(title="Dune", author="Frank Herbert")
    await books.add(book)
    book.title = "Dune Messiah"
    book.publish()
    await books.add(book)
    # A command from application code (Protean's domain.process wrote ConfirmOrder for B).
    stream = f"shop::order:command-{order.id}"
    command = ShipOrder(order_id=order.id, tracking="T-A")
    await store.write(stream, command.to_message(stream_name=stream))

    def owner(message: Message) -> str:
        return "protean" if any(i in message.stream_name for i in theirs) else "worker"

    written: dict[str, dict[str, list[Message]]] = {"protean": {}, "worker": {}}
    for category in ("shop::order", "shop::book", "shop::order:snapshot", "shop::order:command"):
        for message in await store.read_category(category):
            written[owner(message)].setdefault(message.type, []).append(message)
    by_protean, by_worker = written["protean"], written["worker"]
    by_protean["command"] = by_protean.pop("Shop.ConfirmOrder.v1")
    by_worker["command"] = by_worker.pop("Shop.ShipOrder.v1")
    assert set(by_worker) == set(by_protean)
    for type_name, ours in by_worker.items():
        mine, their = ours[0], by_protean[type_name][0]
        if type_name == "SNAPSHOT":
            assert (mine.metadata_json, their.metadata_json) == (None, None)
            assert keys(mine.data) == keys(their.data)
            continue
        assert keys(mine.metadata) == keys(their.metadata), type_name
        mine_fixed, their_fixed = fixed(mine.metadata), fixed(their.metadata)  # type: ignore[arg-type]
        if type_name == "command":
            assert mine_fixed.pop("type") != their_fixed.pop("type")
        assert mine_fixed == their_fixed, type_name
        for message in (mine, their):
            meta: dict[str, Any] = message.metadata  # type: ignore[assignment]
            assert meta["envelope"]["checksum"] == checksum(message.data)
            assert meta["headers"]["stream"] == message.stream_name
            assert meta["extensions"] == {}
            if type_name == "command":  # named after its stream; a root starts a correlation
                assert meta["headers"]["id"] == message.stream_name.split("-", 1)[1]
                assert meta["domain"]["correlation_id"]
            else:
                sequence = meta["domain"]["sequence_id"]
                assert meta["headers"]["id"] == f"{message.stream_name}-{sequence}"


# -- a process manager's instance, started by Protean and continued by the worker ------------

flows = Domain("Shop", conventions="protean")


@flows.event(category="shop::order")
class OrderPlaced(BaseEvent):
    order_id: str
    customer_name: str


@flows.event(category="shop::order")
class OrderConfirmed(BaseEvent):
    order_id: str


@flows.process_manager(name="fulfillment", start_from="head")
class Fulfillment(ProcessManager):
    """Protean's ``Fulfillment`` of ``protean_app.py``: the same fields and handlers."""

    id: str | None = None  # Protean's identifier field, kept in its transitions' state
    order_id: str | None = None
    status: str = "new"

    @handle(OrderPlaced, correlate="order_id", start=True)
    def placed(self, event: OrderPlaced, ctx: Context) -> None:
        self.order_id, self.status = event.order_id, "placed"

    @handle(OrderConfirmed, correlate="order_id", end=True)
    def confirmed(self, event: OrderConfirmed, ctx: Context) -> None:
        self.status = "confirmed"


async def test_a_process_instance_protean_started_is_continued_by_the_worker_and_back(
    database_dsn: str, store: MessageStore, run_until_caught_up: Any
) -> None:
    """Protean's process manager starts an instance (its transition in
    ``shop::fulfillment-{id}``); the worker's, under ``conventions="protean"``, loads it from
    that transition, ends it on OrderConfirmed, and writes its own in the same layout, which
    Protean's ``_load_or_create`` reads back."""
    started = await protean("process", database_dsn)
    order = started["order"]
    await run_until_caught_up(flows)  # (from the head: Protean handled OrderPlaced)
    stream = f"shop::order-{order}"
    await store.write(stream, OrderConfirmed(order_id=order).to_message(stream_name=stream))
    await run_until_caught_up(flows)

    first, second = await store.read_stream(f"shop::fulfillment-{order}")
    assert first.type == second.type == "Shop._FulfillmentTransition.v1"
    assert second.data == {
        "state": {"id": order, "order_id": order, "status": "confirmed"},
        "handler_name": "confirmed",
        "is_complete": True,
    }
    assert second.metadata["headers"]["id"] == f"shop::fulfillment-{order}-1"  # type: ignore[index]
    loaded = await protean("instance", database_dsn, order)
    assert loaded == {
        "state": {"order_id": order, "status": "confirmed"},
        "complete": True,
        "version": 1,
    }
