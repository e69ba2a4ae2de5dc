"""Protean's layout as this library writes and reads it, against the genuine MessageDB.

These need no Protean: they pin what ``conventions="protean"`` writes (streams, types, ids,
metadata envelope, snapshots, fact events, commands) and read. ``test_protean.py`` proves the
same against Protean 0.18 itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from structlog.testing import capture_logs

from tests.interop.worker_app import (
    Book,
    BookRow,
    Order,
    OrderConfirmed,
    OrderRow,
    ShipOrder,
    shop,
    tracking,
)
from worker import NewMessage
from worker.errors import MalformedMessageError
from worker.store.protean import checksum

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore
    from worker.store.message import Message

pytestmark = pytest.mark.anyio


async def messages(store: MessageStore, category: str) -> list[Message]:
    return await store.read_category(category)


async def test_an_event_sourced_order_is_written_and_read_in_protean_s_layout(
    store: MessageStore,
) -> None:
    orders = shop.repository_for(Order, store)
    order = Order.place("Alice")
    await orders.add(order)
    order.confirm()
    order.ship("T-1")
    await orders.add(order)

    stream = f"shop::order-{order.id}"
    written = await store.read_stream(stream)
    assert [(m.type, m.position) for m in written] == [
        ("Shop.OrderPlaced.v1", 0),
        ("Shop.OrderConfirmed.v1", 1),
        ("Shop.OrderShipped.v1", 2),
    ]
    for m in written:
        meta = m.metadata
        assert meta is not None
        assert meta["headers"]["id"] == f"{stream}-{m.position}"
        assert (meta["headers"]["stream"], meta["headers"]["type"]) == (stream, m.type)
        assert meta["envelope"]["checksum"] == checksum(m.data)
        assert meta["domain"]["sequence_id"] == str(m.position)
        assert meta["domain"]["expected_version"] == m.position - 1
        assert meta["domain"]["fqn"] == f"tests.interop.worker_app.{m.type.split('.')[1]}"
        assert (meta["domain"]["kind"], meta["domain"]["stream_category"]) == (
            "EVENT",
            "shop::order",
        )

    # Three events reach the threshold: a snapshot as Protean writes it.
    snapshot = await store.last_message(f"shop::order:snapshot-{order.id}")
    assert snapshot is not None
    assert (snapshot.type, snapshot.metadata_json) == ("SNAPSHOT", None)
    assert snapshot.data == {**order.model_dump(mode="json"), "_version": 2}

    loaded = await orders.get(order.id)
    assert loaded.model_dump() == order.model_dump()
    assert (loaded.version, loaded._snapshot_version) == (3, 3)


async def test_a_book_s_fact_events_share_its_category_after_its_domain_events(
    store: MessageStore,
) -> None:
    """As Protean saves an aggregate that is not event-sourced: the domain events first, then
    the fact event, all numbered ``{save - 1}.{n}``; domain events record the stream version
    they follow."""
    books = shop.repository_for(Book, store)
    book = Book(title="Dune", author="Frank Herbert")
    await books.add(book)
    book.title = "Dune Messiah"
    book.publish()
    book.publish()
    await books.add(book)

    written = await messages(store, "shop::book")
    assert [(m.stream_name, m.type, m.metadata["domain"]["sequence_id"]) for m in written] == [  # type: ignore[index]
        (f"shop::book-fact-{book.id}", "Shop.BookFactEvent.v1", "0.1"),
        (f"shop::book-{book.id}", "Shop.BookPublished.v1", "1.1"),
        (f"shop::book-{book.id}", "Shop.BookPublished.v1", "1.2"),
        (f"shop::book-fact-{book.id}", "Shop.BookFactEvent.v1", "1.3"),
    ]
    domains = [m.metadata["domain"] for m in written]  # type: ignore[index]
    assert [d["expected_version"] for d in domains] == [None, -1, 0, None]
    assert {d["stream_category"] for d in domains} == {"shop::book"}
    assert [m.metadata["headers"]["id"] for m in written] == [  # type: ignore[index]
        f"{m.stream_name}-{d['sequence_id']}" for m, d in zip(written, domains, strict=True)
    ]
    assert written[-1].data == book.model_dump(mode="json")
    assert (await books.get(book.id)).title == "Dune Messiah"


async def test_the_worker_projects_and_writes_commands_in_protean_s_layout(
    store: MessageStore, pool: asyncpg.Pool[Any], run_until_caught_up: Any
) -> None:
    """Projections read ``shop::order`` and ``shop::book``; a handler's command goes to
    ``shop::order:command-{id}`` with Protean's command metadata, following its event."""
    orders = shop.repository_for(Order, store)
    order = Order.place("Bob")
    order.confirm()
    await orders.add(order)
    await shop.repository_for(Book, store).add(Book(title="Emma", author="Jane Austen"))

    await run_until_caught_up(shop)

    row = await OrderRow.get(pool, order.id)
    assert row is not None and (row.status, row.events) == ("CONFIRMED", 2)
    assert [b.title for b in await BookRow.find(pool)] == ["Emma"]
    [command] = await messages(store, "shop::order:command")
    confirmed = (await store.read_stream(f"shop::order-{order.id}"))[1]
    assert (command.stream_name, command.type) == (
        f"shop::order:command-{order.id}",
        "Shop.ShipOrder.v1",
    )
    assert (
        command.data
        == ShipOrder(
            order_id=order.id, tracking=tracking(OrderConfirmed(order_id=order.id))
        ).model_dump()
    )
    meta = command.metadata
    assert meta is not None
    assert meta["headers"]["id"] == order.id
    assert meta["domain"]["kind"] == "COMMAND"
    assert meta["domain"]["causation_id"] == f"shop::order-{order.id}-1"
    assert meta["domain"]["origin_stream"] == f"shop::order-{order.id}"
    assert meta["domain"]["correlation_id"]  # a command starts a correlation when none runs
    assert meta["extensions"]["causationMessageGlobalPosition"] == confirmed.global_position
    assert meta["envelope"]["checksum"] == checksum(command.data)


async def test_an_event_whose_data_does_not_match_its_checksum_is_malformed(
    store: MessageStore,
) -> None:
    orders = shop.repository_for(Order, store)
    order = Order.place("Carol")
    await orders.add(order)
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE message_store.messages SET data = jsonb_set(data, '{customer_name}', "
            "'\"Mallory\"') WHERE stream_name = $1",
            f"shop::order-{order.id}",
        )
    with pytest.raises(MalformedMessageError, match="checksum"):
        await orders.get(order.id)


async def test_a_protean_snapshot_that_no_longer_fits_is_ignored(store: MessageStore) -> None:
    orders = shop.repository_for(Order, store)
    order = Order.place("Dan")
    await orders.add(order)
    stale = {"id": order.id, "customer_name": "Dan", "legacy": 1, "_version": 0}
    await store.write(f"shop::order:snapshot-{order.id}", NewMessage("SNAPSHOT", stale))
    with capture_logs() as logs:
        loaded = await orders.get(order.id)
    assert (loaded.customer_name, loaded.version) == ("Dan", 1)
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["snapshot ignored"]
