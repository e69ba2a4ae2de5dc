"""The seed's shop written with Protean 0.18, sharing one MessageDB with this library.

``tests/interop/test_protean.py`` runs it in a process of its own (Protean keeps global state:
its domain context, logging, a psycopg2 pool, an engine with its own event loop), with the
interpreter that runs the tests, where the ``protean`` extra is installed:

    python tests/interop/protean_app.py history DSN     write a history with Protean
    python tests/interop/protean_app.py load DSN ID...  Protean's repo.get of orders
    python tests/interop/protean_app.py engine DSN      run Protean's engine until idle
    python tests/interop/protean_app.py names NAME...   Protean's names of domains and classes
    python tests/interop/protean_app.py process DSN     place an order; Protean's process manager
                                                        starts its instance (engine until idle)
    python tests/interop/protean_app.py instance DSN ID the process manager's instance ID, as
                                                        Protean loads it from its stream

Each prints one JSON document on stdout. ``worker_app.py`` is the same shop in this library.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("PROTEAN_NO_AUTO_LOGGING", "1")
warnings.simplefilter("ignore")  # Protean's deprecation notices are not this test's business

from inflection import underscore  # noqa: E402  (Protean's dependency, and its naming rule)
from protean import Domain, apply, handle  # noqa: E402
from protean.fields import Identifier, String  # noqa: E402
from protean.server.engine import Engine  # noqa: E402
from protean.utils.globals import current_domain  # noqa: E402

domain = Domain(
    name="Shop",
    config={
        "snapshot_threshold": 3,
        "event_store": {"provider": "message_db", "database_uri": "unset"},
    },
)

SEEN: list[dict[str, Any]] = []


def seen(handler: str, message: Any) -> None:
    """What a handler got: its type, Protean's ids and the data."""
    meta = message._metadata
    SEEN.append(
        {
            "handler": handler,
            "type": meta.headers.type,
            "id": meta.headers.id,
            "stream": meta.headers.stream,
            "kind": meta.domain.kind,
            "causation_id": meta.domain.causation_id,
            "correlation_id": meta.domain.correlation_id,
            "data": message.payload,
        }
    )


@domain.event(part_of="Order")
class OrderPlaced:
    order_id = Identifier(required=True)
    customer_name = String(max_length=150, required=True)


@domain.event(part_of="Order")
class OrderConfirmed:
    order_id = Identifier(required=True)


@domain.event(part_of="Order")
class OrderShipped:
    order_id = Identifier(required=True)
    tracking = String(max_length=50, required=True)


@domain.aggregate(event_sourced=True)
class Order:
    customer_name = String(max_length=150, required=True)
    status = String(max_length=20, default="PENDING")
    tracking = String(max_length=50)

    @classmethod
    def place(cls, customer_name: str) -> Any:
        order = cls._create_new()
        order.raise_(OrderPlaced(order_id=order.id, customer_name=customer_name))
        return order

    def confirm(self) -> None:
        self.raise_(OrderConfirmed(order_id=self.id))

    def ship(self, tracking: str) -> None:
        self.raise_(OrderShipped(order_id=self.id, tracking=tracking))

    @apply
    def when_placed(self, event: OrderPlaced) -> None:
        self.id = event.order_id
        self.customer_name = event.customer_name
        self.status = "PENDING"

    @apply
    def when_confirmed(self, event: OrderConfirmed) -> None:
        self.status = "CONFIRMED"

    @apply
    def when_shipped(self, event: OrderShipped) -> None:
        self.status = "SHIPPED"
        self.tracking = event.tracking


@domain.command(part_of=Order)
class ConfirmOrder:
    order_id = Identifier(identifier=True, required=True)


@domain.command(part_of=Order)
class ShipOrder:
    order_id = Identifier(identifier=True, required=True)
    tracking = String(max_length=50, required=True)


@domain.command_handler(part_of=Order)
class OrderCommands:
    @handle(ConfirmOrder)
    def confirm(self, command: ConfirmOrder) -> None:
        seen("OrderCommands", command)
        repo = current_domain.repository_for(Order)
        order = repo.get(command.order_id)
        order.confirm()
        repo.add(order)

    @handle(ShipOrder)
    def ship(self, command: ShipOrder) -> None:
        seen("OrderCommands", command)
        repo = current_domain.repository_for(Order)
        order = repo.get(command.order_id)
        order.ship(command.tracking)
        repo.add(order)


@domain.event(part_of="Book")
class BookPublished:
    book_id = Identifier(required=True)
    title = String(max_length=200, required=True)


@domain.aggregate(fact_events=True)
class Book:
    title = String(max_length=200, required=True)
    author = String(max_length=150, required=True)

    def publish(self) -> None:
        self.raise_(BookPublished(book_id=self.id, title=self.title))


@domain.event_handler(part_of=Order)
class OrderEvents:
    @handle(OrderPlaced)
    def placed(self, event: OrderPlaced) -> None:
        seen("OrderEvents", event)

    @handle(OrderConfirmed)
    def confirmed(self, event: OrderConfirmed) -> None:
        seen("OrderEvents", event)

    @handle(OrderShipped)
    def shipped(self, event: OrderShipped) -> None:
        seen("OrderEvents", event)


@domain.event_handler(part_of=Book)
class BookEvents:
    @handle("Shop.BookFactEvent.v1")
    def saved(self, event: Any) -> None:
        seen("BookEvents", event)

    @handle(BookPublished)
    def published(self, event: BookPublished) -> None:
        seen("BookEvents", event)


def register_process_manager() -> Any:
    """``Fulfillment``: started by OrderPlaced, ended by OrderConfirmed (registered only by the
    commands that use it, so the other runs have no process manager)."""

    @domain.process_manager(stream_categories=["shop::order"])
    class Fulfillment:
        order_id = Identifier()
        status = String(default="new")

        @handle(OrderPlaced, start=True, correlate="order_id")
        def placed(self, event: OrderPlaced) -> None:
            self.order_id = event.order_id
            self.status = "placed"

        @handle(OrderConfirmed, correlate="order_id", end=True)
        def confirmed(self, event: OrderConfirmed) -> None:
            self.status = "confirmed"

    return Fulfillment


def process() -> dict[str, Any]:
    orders = domain.repository_for(Order)
    order = Order.place("Carol")
    orders.add(order)
    Engine(domain, test_mode=True).run()
    return {"order": order.id}


def instance(pm: Any, ident: str) -> dict[str, Any]:
    found = pm._load_or_create(ident, False)
    return {
        "state": {"order_id": found.order_id, "status": found.status},
        "complete": found._is_complete,
        "version": found._version,
    }


def with_search_path(dsn: str) -> str:
    """The DSN with MessageDB's schema on the search path (its functions call each other
    unqualified; the ``message_store`` role's own setting does this in a deployment)."""
    parts = urlsplit(dsn)
    option = "options=-csearch_path%3Dmessage_store,public"
    return urlunsplit(parts._replace(query=f"{parts.query}&{option}" if parts.query else option))


def start(dsn: str) -> None:
    domain.config["event_store"] = {"provider": "message_db", "database_uri": with_search_path(dsn)}
    domain.init(traverse=False)


def history() -> dict[str, Any]:
    """Order A placed, confirmed and shipped, then loaded (so Protean snapshots it); order B
    placed and confirmed by a ``ConfirmOrder`` command through Protean's engine; a book saved
    twice (two fact events) and published once."""
    orders = domain.repository_for(Order)
    a = Order.place("Alice")
    orders.add(a)
    a = orders.get(a.id)
    a.confirm()
    orders.add(a)
    a = orders.get(a.id)
    a.ship("T-A")
    orders.add(a)
    orders.get(a.id)  # three events: Protean writes a snapshot as it loads
    b = Order.place("Bob")
    orders.add(b)
    domain.process(ConfirmOrder(order_id=b.id), asynchronous=True)
    books = domain.repository_for(Book)
    book = Book(title="Dune", author="Frank Herbert")
    books.add(book)
    book = books.get(book.id)
    book.title = "Dune Messiah"
    book.publish()
    books.add(book)
    Engine(domain, test_mode=True).run()
    return {"orders": {"A": a.id, "B": b.id}, "book": book.id, "seen": SEEN}


def load(idents: list[str]) -> dict[str, Any]:
    orders = domain.repository_for(Order)
    return {ident: orders.get(ident).to_dict() for ident in idents}


def engine() -> dict[str, Any]:
    Engine(domain, test_mode=True).run()
    return {"seen": SEEN}


def names(given: list[str]) -> dict[str, Any]:
    return {
        name: {
            "camel_case_name": Domain(name=name, config={}).camel_case_name,
            "normalized_name": Domain(name=name, config={}).normalized_name,
            "underscore": underscore(name),
        }
        for name in given
    }


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "names":
        result = names(args)
    else:
        pm = register_process_manager() if command in ("process", "instance") else None
        start(args[0])
        with domain.domain_context():
            if command == "history":
                result = history()
            elif command == "load":
                result = load(args[1:])
            elif command == "engine":
                result = engine()
            elif command == "process":
                result = process()
            elif command == "instance":
                result = instance(pm, args[1])
            else:
                raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
