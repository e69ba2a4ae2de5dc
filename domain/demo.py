"""The demo: write a realistic shop history, run the worker until caught up, show read models.

Run with ``make demo`` (which installs MessageDB first), or ``python -m domain.demo`` after
``worker db install``.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from domain import Book, Order, OrderItem, domain
from domain.fulfillment import verdict
from projections.orders_by_status import OrdersByStatus
from worker import App, MessageStore, open_app, span

if TYPE_CHECKING:
    import asyncpg

console = Console()
PRODUCTS = {"dune": "9.99", "neuromancer": "12.50", "foundation": "8.75", "hyperion": "11.20"}
CUSTOMERS = ["Alice", "Bob", "Chandra", "Dmitri", "Eun-ji", "Fatima", "Gustavo", "Hana"]


async def write_history(store: MessageStore, orders: int = 300, books: int = 12) -> None:
    """Orders placed, most confirmed, many shipped; books saved, published and repriced."""
    rng = random.Random()
    repo = domain.repository_for(Order, store)
    for _ in range(orders):
        items = [
            OrderItem(product_id=p, quantity=rng.randint(1, 3), price=Decimal(PRODUCTS[p]))
            for p in rng.sample(sorted(PRODUCTS), rng.randint(1, 3))
        ]
        order = Order.place(rng.choice(CUSTOMERS), items)
        # The warehouse ships only orders the fulfillment process sees paid.
        if verdict(order.id) == "paid" and rng.random() < 0.8:
            order.confirm()
            if rng.random() < 0.75:
                order.ship(f"TRK{rng.randint(100000, 999999)}")
        with span("place order", {"order": order.id}):  # a trace, with [telemetry] enabled
            await repo.add(order)
    shelf = domain.repository_for(Book, store)
    for n in range(books):
        book = Book(title=f"Volume {n + 1}", author=rng.choice(CUSTOMERS), price=10 + n)
        await shelf.add(book)
        book.publish()
        book.price = round(book.price * 0.9, 2)
        await shelf.add(book)


async def run_with_progress(app: App, pool: asyncpg.Pool[Any]) -> None:
    """Run every consumer until caught up, with a progress bar over all categories."""
    runner = app.runner()
    heads = {}
    for subscriber in app.domain.subscribers:
        for category in subscriber.categories:
            heads[subscriber.consumer_name(category)] = (
                await MessageStore(pool).category_head(category) or 0
            )
    columns = (TextColumn("projecting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("catch-up", total=sum(heads.values()))
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while True:
                    done = sum(min(c.position, heads[c.name]) for c in runner.result.consumers)
                    progress.update(task, completed=done)
                    await anyio.sleep(0.1)

            tg.start_soon(watch)
            await runner.run(until_caught_up=True, handle_signals=False)
            progress.update(task, completed=sum(heads.values()))
            tg.cancel_scope.cancel()


async def settle(app: App) -> None:
    """Run again until a run moves nothing: the fulfillment process's commands and the desks'
    answers land in categories whose consumers may have caught up before they came."""
    for _ in range(10):
        result = await app.runner().run(until_caught_up=True, handle_signals=False)
        if not any(c.processed for c in result.consumers):
            return


async def show_fulfillment(pool: asyncpg.Pool[Any]) -> None:
    """Each fulfillment instance's status, from its last transition; and its deadlines."""
    table = Table("status", "reason", "instances", title="fulfillment (a process manager)")
    for row in await pool.fetch(
        "SELECT data->'state'->>'status', coalesce(data->'state'->>'reason', ''), count(*) "
        "FROM (SELECT DISTINCT ON (stream_name) data FROM message_store.messages "
        "WHERE message_store.category(stream_name) = 'fulfillment' "
        "ORDER BY stream_name, position DESC) last GROUP BY 1, 2 ORDER BY 1, 2"
    ):
        table.add_row(row[0], row[1], str(row[2]))
    console.print(table)
    pending = await pool.fetchval(
        "SELECT count(*) FROM worker.deadlines WHERE fired_at IS NULL AND cancelled_at IS NULL"
    )
    console.print(
        f"payment deadlines pending: {pending} (a running worker cancels those orders when "
        "they fall due)"
    )


async def show(pool: asyncpg.Pool[Any]) -> None:
    counts = Table("status", "orders", "items", "revenue", title="order_summary by status")
    for row in await pool.fetch(
        "SELECT status, count(*), sum(item_count), sum(total) FROM order_summary "
        "GROUP BY status ORDER BY status"
    ):
        counts.add_row(row[0], str(row[1]), str(row[2]), str(row[3]))
    console.print(counts)
    by_status = Table("status", "orders", title="orders_by_status (its own projection)")
    for status in await OrdersByStatus.find(pool, order_by="status"):
        by_status.add_row(status.status, str(status.orders))
    console.print(by_status)
    latest = Table(
        "order",
        "customer",
        "status",
        "items",
        "total",
        "tracking",
        title="order_summary (latest 8)",
    )
    for row in await pool.fetch(
        "SELECT order_id, customer_name, status, item_count, total, tracking FROM order_summary "
        "ORDER BY placed_at DESC LIMIT 8"
    ):
        latest.add_row(*(str(v) if v is not None else "" for v in row))
    console.print(latest)
    books = Table("book", "title", "author", "price", "published", "version", title="book_catalog")
    for row in await pool.fetch(
        "SELECT book_id, title, author, price, published, version FROM book_catalog "
        "ORDER BY title LIMIT 12"
    ):
        books.add_row(*(str(v) for v in row))
    console.print(books)
    sent = await pool.fetchval(
        "SELECT count(*) FROM message_store.messages "
        "WHERE message_store.category(stream_name) = 'notification:command'"
    )
    console.print(f"shipment notifications emitted (exactly once per shipped order): {sent}")


async def main() -> None:
    app = open_app(worker={"log_level": "warning"})
    app.start_telemetry()  # [telemetry] enabled: the history's writes are traced too
    pool = await app.pool()
    try:
        with console.status("writing the example history"):
            await write_history(MessageStore(pool))
        await run_with_progress(app, pool)
        await settle(app)
        await show(pool)
        await show_fulfillment(pool)
    finally:
        await pool.close()


if __name__ == "__main__":
    anyio.run(main)
