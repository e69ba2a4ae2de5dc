"""Messages the reader cannot fully understand are malformed: a ``schemaVersion`` that is no
positive integer, a version newer than the class's, an upcaster that raises. In memory: the
testing kit's ``project`` (the engine's own batches) parks them at once, and a repository load
or ``domain.decode`` refuses them in one line."""

from __future__ import annotations

from typing import Any

import pytest

from worker import BaseAggregate, BaseEvent, Context, Domain, NewMessage, apply, on
from worker.engine.routes import at_first_version
from worker.errors import MalformedMessageError
from worker.testing import MemoryMessageStore, in_stream, project

pytestmark = pytest.mark.anyio

domain = Domain("versions")


@domain.aggregate(is_event_sourced=True, stream_category="sale")
class Sale(BaseAggregate):
    customer: str = ""

    @apply
    def placed(self, event: Placed) -> None:
        self.customer = event.customer

    @apply
    def noted(self, event: Noted) -> None:
        pass


@domain.event(part_of=Sale)
class Placed(BaseEvent):
    """At version 1 (the default)."""

    sale_id: str
    customer: str


@domain.event(part_of=Sale, version=2)
class Noted(BaseEvent):
    """At version 2: version 1 had ``text``, now ``note``."""

    sale_id: str
    note: str


@domain.upcaster(Noted, from_version=1)
def text_to_note(data: dict[str, Any]) -> dict[str, Any]:
    return {"sale_id": data["sale_id"], "note": data["text"]}  # a KeyError without ``text``


domain.check()


@domain.projector(name="sales_seen", stream_categories=["sale"])
class Seen:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @on(Placed)
    def placed(self, event: Placed, ctx: Context) -> None:
        self.seen.append(event.customer)

    @on(Noted)
    def noted(self, event: Noted, ctx: Context) -> None:
        self.seen.append(event.note)


def placed(sale: str, metadata: dict[str, Any] | None) -> NewMessage:
    return NewMessage("Placed", {"sale_id": sale, "customer": sale}, metadata=metadata)


async def parked_at_once(message: NewMessage) -> str:
    """Project one good sale and ``message`` (in a stream of its own); check ``message`` alone
    was parked, at its first attempt, and unhandled; its error."""
    instance = Seen()
    result = await project(
        Seen,
        [("sale-ok", placed("ok", None)), ("sale-x", message)],
        domain=domain,
        instance=instance,
        max_attempts=3,
    )
    assert set(instance.seen) == {"ok"}  # (redone after the failure: maybe twice)
    (parked,) = result.parked
    assert (parked.stream_name, parked.listing.attempts) == ("sale-x", 1)
    assert isinstance(parked.error, MalformedMessageError)
    return str(parked.error)


@pytest.mark.parametrize(
    ("value", "shown"),
    [("abc", "'abc'"), ("-5", "'-5'"), ("0", "'0'"), (None, "None"), (1.5, "1.5"), (0, "0")],
)
async def test_a_schema_version_that_is_no_positive_integer_is_parked_at_once(
    value: Any, shown: str
) -> None:
    """A ``schemaVersion`` that is not a positive integer is not read as version 1: the message
    is malformed, parked without a retry, with one line naming the value."""
    error = await parked_at_once(placed("x", {"schemaVersion": value}))
    assert f"schemaVersion {shown} is not a positive integer" in error
    assert "\n" not in error


@pytest.mark.parametrize("value", ["1", 1])
async def test_a_message_at_the_class_s_own_version_is_handled(value: Any) -> None:
    """``schemaVersion`` 1 (as text or number) for a version-1 class is the class's own."""
    instance = Seen()
    result = await project(
        Seen,
        [("sale-1", placed("ann", {"schemaVersion": value}))],
        domain=domain,
        instance=instance,
    )
    assert (instance.seen, result.parked) == (["ann"], [])


async def test_a_message_newer_than_its_version_1_class_is_parked_at_once() -> None:
    """A message written at version 9 of a class the reader knows at version 1 is not read
    with its newer fields dropped: it is parked at once, naming both versions."""
    error = await parked_at_once(placed("x", {"schemaVersion": "9"}))
    assert "written at schema version 9, newer than Placed's (1)" in error


async def test_a_newer_version_is_found_beside_a_nested_version_1() -> None:
    """The fast path reads the version from the metadata's text: a nested ``schemaVersion`` 1
    does not hide a top-level 9."""
    metadata = {"origin": {"schemaVersion": "1"}, "schemaVersion": 9}
    error = await parked_at_once(placed("x", metadata))
    assert "written at schema version 9, newer than Placed's (1)" in error


@pytest.mark.parametrize(
    ("metadata_json", "first"),
    [
        (None, True),
        ('{"correlationStreamName": "order-1"}', True),
        ('{"schemaVersion": "1", "traceparent": "00-ab"}', True),  # as jsonb prints it
        ('{"schemaVersion":"1"}', True),  # as orjson writes it
        ('{"a": 1, "schemaVersion": 1}', True),
        ('{"schemaVersion":1,"a":2}', True),
        ('{"schemaVersion": "12"}', False),
        ('{"schemaVersion": 12}', False),
        ('{"schemaVersion": 1.5}', False),
        ('{"schemaVersion": "1x"}', False),
        ('{"o": {"schemaVersion": "1"}, "schemaVersion": "2"}', False),
        ('{"note": "schemaVersion"}', False),  # (read in full: it says version 1)
    ],
)
def test_the_fast_path_takes_only_messages_at_version_1(
    metadata_json: str | None, first: bool
) -> None:
    """``at_first_version`` says yes only where the metadata's text shows version 1 (or none);
    every other message has its version read in full."""
    assert at_first_version(metadata_json) is first


async def test_a_message_that_an_upcaster_fails_on_is_parked_at_once() -> None:
    """An upcaster that raises is no handler failure to retry: the message is malformed,
    parked at once, naming the upcaster, the version step and the error."""
    error = await parked_at_once(NewMessage("Noted", {"sale_id": "x", "body": "?"}))
    assert "upcaster text_to_note of Noted from version 1 to 2 raised KeyError: 'text'" in error
    assert "\n" not in error


async def test_a_repository_load_refuses_a_message_an_upcaster_fails_on() -> None:
    """Loading an aggregate whose stream holds such a message raises ``MalformedMessageError``
    naming the message and the upcaster."""
    store = MemoryMessageStore()
    for _, message in [
        *in_stream("sale-1", Placed(sale_id="1", customer="ann")),
        ("sale-1", NewMessage("Noted", {"sale_id": "1"})),
    ]:
        await store.write("sale-1", message)
    with pytest.raises(MalformedMessageError, match=r"sale-1@1 .* upcaster text_to_note of Noted"):
        await domain.repository_for(Sale, store).get("1")


@pytest.mark.parametrize(
    ("metadata", "detail"),
    [
        ({"schemaVersion": "abc"}, "schemaVersion 'abc' is not a positive integer"),
        ({"schemaVersion": 3}, "written at schema version 3, newer than Placed's (1)"),
    ],
)
async def test_decoding_refuses_a_bad_or_newer_version(
    metadata: dict[str, Any], detail: str
) -> None:
    """``domain.decode`` (the repository's, replays' and ``events check``'s path) refuses a bad
    or newer schema version with the same line as the engine."""
    store = MemoryMessageStore()
    await store.write("sale-1", placed("1", metadata))
    (message,) = await store.read_stream("sale-1")
    with pytest.raises(MalformedMessageError, match=detail.replace("(", r"\(").replace(")", r"\)")):
        domain.decode(message)


protean = Domain("versions", conventions="protean")


@protean.event(category="versions::sale")
class Opened(BaseEvent):
    """At version 1: written as ``Versions.Opened.v1`` in Protean's layout."""

    sale_id: str


@protean.projector(name="sales_opened", stream_categories=["versions::sale"])
class Opens:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @on(Opened)
    def opened(self, event: Opened, ctx: Context) -> None:
        self.seen.append(event.sale_id)


async def test_a_protean_type_of_a_newer_version_is_parked_not_skipped() -> None:
    """In Protean's layout the version is in the type (``Versions.Opened.v9``): a type newer
    than the class is no unknown type to skip silently; it is parked at once, naming both
    versions, while a type no class has (``Versions.Closed.v1``) is still skipped."""
    instance = Opens()
    result = await project(
        Opens,
        [
            ("versions::sale-a", NewMessage("Versions.Opened.v1", {"sale_id": "a"})),
            ("versions::sale-b", NewMessage("Versions.Opened.v9", {"sale_id": "b"})),
            ("versions::sale-c", NewMessage("Versions.Closed.v1", {"sale_id": "c"})),
        ],
        domain=protean,
        instance=instance,
        max_attempts=3,
    )
    assert set(instance.seen) == {"a"}  # (redone after the failure: maybe twice)
    (parked,) = result.parked
    assert (parked.stream_name, parked.listing.attempts) == ("versions::sale-b", 1)
    assert "written at schema version 9, newer than Opened's (1)" in str(parked.error)
