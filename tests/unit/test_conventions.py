"""Message conventions: Eventide's names unchanged, Protean 0.18's names, metadata and snapshots.

What Protean itself makes of these layouts is proven against Protean in tests/interop; here the
rules are checked on their own, without a database.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, ClassVar

import pytest
from pydantic import Field

from worker import BaseAggregate, BaseEntity, BaseEvent, Domain, apply, on
from worker.ops.settings import Settings
from worker.store.conventions import (
    EVENTIDE,
    PROTEAN,
    Outgoing,
    ParsedType,
    SchemaVersionError,
    SnapshotLayoutError,
    conventions_named,
)
from worker.store.message import Message
from worker.store.metadata import follow
from worker.store.protean import camel_case_name, checksum, normalized_name, underscore

DASHED = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Stored(tuple[Any, ...]):
    """A stored message without a database: ``Message``'s properties over a plain tuple."""

    id = Message.id
    stream_name = Message.stream_name
    type = Message.type
    position = Message.position
    global_position = Message.global_position
    data_json = Message.data_json
    data = Message.data
    metadata_json = Message.metadata_json
    metadata = Message.metadata


def stored(
    stream_name: str,
    type_name: str,
    data: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    position: int = 0,
    global_position: int = 1,
) -> Any:
    return Stored(
        (
            "0b6e4f5a-8f5e-4a55-9d2b-0c7a1b9e6f10",
            stream_name,
            type_name,
            position,
            global_position,
            json.dumps(data or {}),
            None if metadata is None else json.dumps(metadata),
        )
    )


def shop(conventions: str = "protean") -> Domain:
    """A small shop: an event-sourced Order, a fact-event Book, an entity, a command."""
    domain = Domain("shop", conventions=conventions)  # type: ignore[arg-type]

    @domain.entity
    class Line(BaseEntity):
        sku: str

    @domain.aggregate(is_event_sourced=True, stream_category="order")
    class Order(BaseAggregate):
        customer: str = ""

        @apply
        def placed(self, event: Placed) -> None:
            self.customer = event.customer

    @domain.event(part_of=Order)
    class Placed(BaseEvent):
        __version__: ClassVar[int] = 3
        order_id: str
        customer: str

    @domain.aggregate(fact_events=True)
    class BookEntry(BaseAggregate):
        title: str = Field(max_length=20)

    @domain.command(part_of=Order)
    class Cancel(BaseEvent):
        order_id: str

    @domain.projector(name="orders")
    class Orders:
        @on(Placed)
        def placed(self, event: Placed, ctx: Any) -> None: ...

        @on(BookEntry.FactEvent)
        def book(self, event: Any, ctx: Any) -> None: ...

    domain.classes = {  # type: ignore[attr-defined]
        c.__name__: c for c in (Line, Order, Placed, BookEntry, Cancel, Orders)
    }
    return domain


def cls(domain: Domain, name: str) -> Any:
    return domain.classes[name]  # type: ignore[attr-defined]


# -- names ------------------------------------------------------------------------------------


def test_protean_names_of_a_domain_and_its_aggregates() -> None:
    """Protean's Domain.camel_case_name and normalized_name, and inflection's underscore."""
    assert [camel_case_name(n) for n in ("shop", "my_domain", "My Domain 1.0", "bank-account")] == [
        "Shop",
        "MyDomain",
        "MyDomain10",
        "BankAccount",
    ]
    assert [normalized_name(n) for n in ("Shop", "My Domain", "My-Domain", "My Domain 1.0")] == [
        "shop",
        "my_domain",
        "my_domain",
        "my_domain_1_0",
    ]
    assert [underscore(n) for n in ("Order", "OrderItem", "HTTPServer", "IOError")] == [
        "order",
        "order_item",
        "http_server",
        "io_error",
    ]


def test_protean_conventions_name_categories_types_and_ids() -> None:
    domain = shop()
    order, book, placed = cls(domain, "Order"), cls(domain, "BookEntry"), cls(domain, "Placed")
    assert order.__stream_category__ == "shop::order"  # a given category gets the prefix too
    assert book.__stream_category__ == "shop::book_entry"
    assert placed.type_name() == "Shop.Placed.v3"
    assert placed.__aliases__ == ("Shop.Placed.v1", "Shop.Placed.v2")
    assert placed.__category__ == "shop::order"
    assert book.FactEvent.type_name() == "Shop.BookEntryFactEvent.v1"
    assert book.FactEvent.__category__ == "shop::book_entry"  # fact streams share the category
    assert cls(domain, "Cancel").__category__ == "shop::order:command"
    assert cls(domain, "Cancel").type_name() == "Shop.Cancel.v1"
    assert DASHED.match(order().id) and DASHED.match(cls(domain, "Line")(sku="a").id)
    [subscriber] = domain.subscribers
    assert subscriber.categories == ("shop::book_entry", "shop::order")


def test_every_version_of_a_protean_type_decodes_into_its_class() -> None:
    domain = shop()
    placed = cls(domain, "Placed")
    for version in (1, 2, 3):
        assert domain.event_class(f"Shop.Placed.v{version}") is placed
    old = stored("shop::order-1", "Shop.Placed.v2", {"order_id": "1", "name": "A"})
    assert domain.schema_version(old) == 2
    # The version the type names runs the upcaster chain from there: v2 -> v3 renames a field.
    domain.upcaster(placed, from_version=1)(lambda data: data)
    domain.upcaster(placed, from_version=2)(
        lambda data: {"order_id": data["order_id"], "customer": data["name"]}
    )
    domain.check()
    assert domain.decode(old) == placed(order_id="1", customer="A")


def test_eventide_conventions_keep_the_names_of_before() -> None:
    domain = shop("eventide")
    order, book = cls(domain, "Order"), cls(domain, "BookEntry")
    assert (order.__stream_category__, book.__stream_category__) == ("order", "book_entry")
    assert cls(domain, "Placed").type_name() == "Placed"
    assert cls(domain, "Placed").__aliases__ == ()
    assert book.FactEvent.__category__ == "book_entry:fact"
    assert cls(domain, "Cancel").__category__ == "order:command"
    assert re.match(r"^[0-9a-f]{32}$", order().id)
    versioned = stored("order-1", "Placed", {}, {"schemaVersion": 2})
    assert domain.schema_version(versioned) == 2
    assert domain.schema_version(stored("order-1", "Placed")) is None


def test_settings_switch_a_domain_to_other_conventions_and_back() -> None:
    """[domain] conventions renames every class registered before (as the CLI configures a
    domain made in code after importing it); unset, the domain keeps its own."""
    domain = shop("eventide")
    placed, book = cls(domain, "Placed"), cls(domain, "BookEntry")
    fact = book.FactEvent
    domain.configure(Settings(domain={"conventions": "protean"}))
    assert domain.conventions is PROTEAN
    assert (placed.type_name(), placed.__category__) == ("Shop.Placed.v3", "shop::order")
    assert book.FactEvent is fact and fact.__category__ == "shop::book_entry"
    assert domain.event_class("Shop.Placed.v1") is placed and domain.event_class("Placed") is None
    assert domain.subscribers[0].categories == ("shop::book_entry", "shop::order")
    assert DASHED.match(cls(domain, "Order")().id)
    domain.configure(Settings())
    assert domain.conventions is PROTEAN
    domain.use_conventions("eventide")
    assert (placed.type_name(), placed.__aliases__, placed.__category__) == ("Placed", (), "order")
    assert domain.subscribers[0].categories == ("book_entry:fact", "order")
    assert re.match(r"^[0-9a-f]{32}$", cls(domain, "Line")(sku="a").id)
    assert Domain.from_settings(Settings(domain={"conventions": "protean"})).conventions is PROTEAN


def test_unknown_conventions_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown conventions 'rails'"):
        conventions_named("rails")
    with pytest.raises(Exception, match="conventions"):
        Settings(domain={"conventions": "rails"})


def test_protean_types_parse_into_name_and_version() -> None:
    assert PROTEAN.parse_type("Shop.OrderPlaced.v12") == ParsedType("Shop.OrderPlaced", 12)
    assert PROTEAN.parse_type("OrderPlaced") == ParsedType("OrderPlaced", None)
    assert EVENTIDE.parse_type("Shop.OrderPlaced.v1") == ParsedType("Shop.OrderPlaced.v1", None)
    assert PROTEAN.schema_version("Legacy", '{"domain": {"version": 4}}') == 4


# -- metadata ---------------------------------------------------------------------------------


def outgoing(stream_name: str, **where: Any) -> Outgoing:
    return Outgoing(
        "Shop.Placed.v1",
        {"order_id": "o-1", "customer": "Zoë"},
        stream_name,
        "app.Placed",
        1,
        "8c9c2b0e-5d6e-4f3a-9a1b-2c3d4e5f6a7b",
        **where,
    )


def test_protean_checksum_is_sha256_of_sorted_compact_ascii_json() -> None:
    data = {"b": 1, "a": "Zoë"}
    text = '{"a":"Zo\\u00eb","b":1}'
    assert checksum(data) == hashlib.sha256(text.encode()).hexdigest()


def test_an_aggregate_event_carries_protean_s_envelope() -> None:
    name = "shop::order-o-1"
    meta = PROTEAN.metadata(outgoing(name, position=2, expected_version=1), None, None)
    assert meta is not None
    assert set(meta) == {"headers", "envelope", "domain", "event_store", "extensions"}
    assert meta["headers"] | {"time": None} == {
        "id": f"{name}-2",
        "time": None,
        "type": "Shop.Placed.v1",
        "stream": name,
        "traceparent": None,
        "idempotency_key": None,
        "deadline": None,
    }
    assert meta["headers"]["time"].endswith("+00:00")
    assert meta["envelope"] == {
        "specversion": "1.0",
        "checksum": checksum({"order_id": "o-1", "customer": "Zoë"}),
    }
    assert meta["domain"] == {
        "fqn": "app.Placed",
        "kind": "EVENT",
        "origin_stream": None,
        "stream_category": "shop::order",
        "version": 1,
        "sequence_id": "2",
        "asynchronous": True,
        "expected_version": 1,
        "priority": 0,
        "correlation_id": None,
        "causation_id": None,
    }
    assert (meta["event_store"], meta["extensions"]) == (None, {})


def test_a_command_is_named_after_its_stream_and_starts_a_correlation() -> None:
    meta = PROTEAN.metadata(outgoing("shop::order:command-o-1"), None, None)
    assert meta is not None
    assert meta["headers"]["id"] == "o-1"
    domain = meta["domain"]
    assert (domain["kind"], domain["stream_category"], domain["sequence_id"]) == (
        "COMMAND",
        None,
        None,
    )
    assert re.match(r"^[0-9a-f]{32}$", domain["correlation_id"])


def test_a_caused_message_follows_its_cause_both_ways() -> None:
    """Protean's ids (causation = the cause's headers.id, correlation carried) and Eventide's
    keys, which go into extensions beside the caller's metadata."""
    cause = stored(
        "shop::order-o-1",
        "Shop.Placed.v1",
        metadata={
            "headers": {"id": "shop::order-o-1-0", "stream": "shop::order-o-1"},
            "domain": {"kind": "EVENT", "correlation_id": "c0ffee"},
            "extensions": {"correlationStreamName": "checkout-9"},
        },
        position=0,
        global_position=41,
    )
    followed = {**follow(cause), "user": "ann"}
    meta = PROTEAN.metadata(outgoing("shop::payment:command-p-1"), followed, cause)
    assert meta is not None
    assert meta["domain"]["causation_id"] == "shop::order-o-1-0"
    assert meta["domain"]["correlation_id"] == "c0ffee"
    assert meta["domain"]["origin_stream"] == "shop::order-o-1"
    assert meta["extensions"] == {
        "causationMessageStreamName": "shop::order-o-1",
        "causationMessagePosition": 0,
        "causationMessageGlobalPosition": 41,
        "correlationStreamName": "checkout-9",
        "user": "ann",
    }
    # A cause without Protean's headers is named as Protean names an aggregate's event.
    plain = stored("order-7", "Placed", position=3)
    event = PROTEAN.metadata(outgoing("shop::order-o-1", position=0), {}, plain)
    assert event is not None
    assert event["domain"]["causation_id"] == "order-7-3"
    assert event["domain"]["correlation_id"] is None  # an event continues, never starts, one


def test_eventide_metadata_is_what_it_was() -> None:
    followed = {"causationMessageStreamName": "a-1", "user": "ann"}
    assert EVENTIDE.metadata(outgoing("order-1"), followed, None) == followed
    assert EVENTIDE.metadata(outgoing("order-1"), None, None) is None
    assert EVENTIDE.metadata(outgoing("order-1"), {}, None) is None


def test_checksum_mismatch_is_found_and_eventide_checks_nothing() -> None:
    data = {"order_id": "o-1"}
    good = {"envelope": {"specversion": "1.0", "checksum": checksum(data)}}
    bad = {"envelope": {"specversion": "1.0", "checksum": "0" * 64}}
    assert PROTEAN.check(stored("shop::order-o-1", "T", data, good)) is None
    assert "does not match" in (PROTEAN.check(stored("shop::order-o-1", "T", data, bad)) or "")
    assert PROTEAN.check(stored("shop::order-o-1", "T", data, {"envelope": {}})) is None
    assert EVENTIDE.check(stored("order-1", "T", data, bad)) is None


# -- snapshots and streams --------------------------------------------------------------------


def test_snapshot_layouts_round_trip() -> None:
    state = {"id": "o-1", "customer": "Ann"}
    protean = PROTEAN.snapshot_message(state, 3)
    assert (protean.type, protean.data, protean.metadata) == (
        "SNAPSHOT",
        {**state, "_version": 2},
        None,
    )
    assert PROTEAN.snapshot_of(stored("s-1", "SNAPSHOT", protean.data)) == (state, 3)
    eventide = EVENTIDE.snapshot_message(state, 3)
    assert (eventide.type, eventide.data) == ("Snapshot", {"version": 3, "state": state})
    assert EVENTIDE.snapshot_of(stored("s-1", "Snapshot", eventide.data)) == (state, 3)
    with pytest.raises(SnapshotLayoutError):
        PROTEAN.snapshot_of(stored("s-1", "SNAPSHOT", state))
    with pytest.raises(SnapshotLayoutError):
        EVENTIDE.snapshot_of(stored("s-1", "Snapshot", {"version": 0, "state": state}))


def test_streams_of_fact_events_snapshots_and_commands() -> None:
    assert PROTEAN.fact_stream("shop::book", "b-1") == "shop::book-fact-b-1"
    assert EVENTIDE.fact_stream("book", "b1") == "book:fact-b1"
    assert PROTEAN.snapshot_stream("shop::order", "o-1") == "shop::order:snapshot-o-1"
    assert PROTEAN.command_category("shop::order") == "shop::order:command"


def test_follow_carries_eventide_keys_kept_in_protean_extensions() -> None:
    cause = stored(
        "shop::order-o-1",
        "T",
        metadata={"extensions": {"correlationStreamName": "c-1", "replyStreamName": "r-1"}},
    )
    followed = follow(cause)
    assert (followed["correlationStreamName"], followed["replyStreamName"]) == ("c-1", "r-1")


def test_a_schema_version_is_a_positive_integer_or_its_digits() -> None:
    assert EVENTIDE.schema_version("Placed", '{"schemaVersion": 2}') == 2
    assert EVENTIDE.schema_version("Placed", '{"schemaVersion": "3"}') == 3
    assert EVENTIDE.schema_version("Placed", '{"a": 1, "schemaVersion": 4}') == 4
    for absent in (None, "{}", "[1]", '"schemaVersion"', '{"correlationStreamName": "x"}'):
        assert EVENTIDE.schema_version("Placed", absent) is None
    assert PROTEAN.schema_version("Legacy", '{"domain": {"version": "5"}}') == 5
    assert PROTEAN.schema_version("Legacy", '{"domain": {}}') is None


@pytest.mark.parametrize("bad", ["true", "0", "-1", '"0"', '"v2"', '"\u00b3"', "2.5", "null", "{}"])
def test_a_stated_schema_version_that_is_no_positive_integer_is_refused(bad: str) -> None:
    """A version that is stated but is no positive integer is not read as absent (version 1):
    ``SchemaVersionError`` names the value."""
    with pytest.raises(SchemaVersionError, match=r"^schemaVersion .* is not a positive integer$"):
        EVENTIDE.schema_version("Placed", f'{{"schemaVersion": {bad}}}')
    with pytest.raises(SchemaVersionError, match=r"^domain.version .* is not a positive integer$"):
        PROTEAN.schema_version("Legacy", f'{{"domain": {{"version": {bad}}}}}')
