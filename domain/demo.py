"""The demo: place, confirm and ship an Order and save a Book through their repositories, then
read the ``order``, ``book`` and ``book:fact`` categories back and print them."""

from __future__ import annotations

from decimal import Decimal

import anyio

from domain import Book, Order, OrderItem, domain
from worker import MessageStore, create_pool, load_settings, resolve_dsn
from worker.log import configure_logging


async def write_history(store: MessageStore) -> tuple[Order, Book]:
    """The seed's walk-through: each step loads, changes and saves through a repository."""
    orders = domain.repository_for(Order, store)
    order = Order.place("Alice", [OrderItem(product_id="dune", quantity=1, price=Decimal("9.99"))])
    await orders.add(order)
    order = await orders.get(order.id)
    order.confirm()
    await orders.add(order)
    order = await orders.get(order.id)
    order.ship("ABC123")
    await orders.add(order)

    books = domain.repository_for(Book, store)
    book = Book(title="Dune", author="Frank Herbert", price=9.99)
    await books.add(book)
    book.publish()
    await books.add(book)
    return order, book


async def show(store: MessageStore, category: str) -> None:
    print(f"the {category!r} category holds:")
    position = 1
    while batch := await store.read_category(category, position, batch_size=500):
        for m in batch:
            print(
                f"  {m.global_position:>6}  {m.stream_name:<44} {m.position:>3}  "
                f"{m.type:<15} {m.data}"
            )
        position = batch[-1].global_position + 1


async def main() -> None:
    settings = load_settings()
    configure_logging(settings.worker.log_level, settings.worker.log_format)
    domain.configure(settings)
    pool = await create_pool(resolve_dsn(settings))
    async with MessageStore(pool) as store:
        order, book = await write_history(store)
        loaded = await domain.repository_for(Order, store).get(order.id)
        print(f"order {order.id} replayed: status {loaded.status}, version {loaded.version}")
        print(f"book {book.id} saved twice: version {book.version}")
        for category in ("order", "book", "book:fact"):
            await show(store, category)


if __name__ == "__main__":
    anyio.run(main)
