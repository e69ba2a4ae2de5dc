"""Building causation trees, where it is pure: which cause a message's metadata names, and how
caused messages hang under their causes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from worker.store.causation import (
    CausationNode,
    CausationTree,
    Cause,
    Traced,
    attach,
    build,
    cause_of,
)
from worker.testing.message_store import MemoryMessage

if TYPE_CHECKING:
    from worker.store.message import Message

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def message(
    global_position: int, stream: str = "order-1", metadata: dict[str, Any] | None = None
) -> Message:
    """A stored message at ``global_position`` (its stream position the same, less one)."""
    meta = None if metadata is None else json.dumps(metadata)
    row = MemoryMessage(
        str(uuid.uuid4()), stream, "Did", global_position - 1, global_position, "{}", meta, WHEN
    )
    return row.as_message()


def caused_by(cause: int, stream: str = "order-1") -> dict[str, Any]:
    """Eventide's metadata of a message caused by the one at global position ``cause``."""
    return {
        "causationMessageStreamName": stream,
        "causationMessagePosition": cause - 1,
        "causationMessageGlobalPosition": cause,
    }


def test_eventide_keys_name_the_cause_by_global_position() -> None:
    assert cause_of(caused_by(7)) == Cause(7, "order-1", 6)


def test_a_position_written_as_digits_counts() -> None:
    """Some writers store positions as strings of digits: they name the cause all the same."""
    assert cause_of({"causationMessageGlobalPosition": "12"}) == Cause(global_position=12)


def test_stream_and_position_alone_name_the_cause() -> None:
    """Without a global position, the stream name and position still name it (position 0
    included)."""
    metadata = {"causationMessageStreamName": "order-1", "causationMessagePosition": 0}
    assert cause_of(metadata) == Cause(None, "order-1", 0)


def test_eventide_keys_under_extensions_name_the_cause() -> None:
    """Protean's layout as this package writes it keeps Eventide's keys under extensions."""
    metadata = {"extensions": caused_by(3), "domain": {"causation_id": "order-1-2"}}
    assert cause_of(metadata) == Cause(3, "order-1", 2)


def test_proteans_causation_id_names_the_cause() -> None:
    assert cause_of({"domain": {"causation_id": "shop::cart-c1-0"}}) == Cause(
        protean_id="shop::cart-c1-0"
    )


def test_a_message_naming_no_cause_is_a_root() -> None:
    """No keys, keys that hold no position, or a null causation id: no cause."""
    assert cause_of({}) is None
    assert cause_of({"causationMessageGlobalPosition": "x"}) is None
    assert cause_of({"causationMessageGlobalPosition": True}) is None
    assert cause_of({"domain": {"causation_id": None}}) is None


def test_caused_messages_hang_under_their_causes_in_global_order() -> None:
    """Each caused message goes under the parent it names; a parent's children keep the order
    they come in (global order)."""
    one, two = CausationNode(Traced.of(message(1))), CausationNode(Traced.of(message(2)))
    parents = {1: one, 2: two}
    added = attach(parents, [message(3, metadata=caused_by(2)), message(4, metadata=caused_by(1))])
    assert [n.message.global_position for n in added] == [3, 4]
    assert [n.message.global_position for n in one.children] == [4]
    assert [n.message.global_position for n in two.children] == [3]
    more = attach(
        {3: added[0]}, [message(5, metadata=caused_by(3)), message(6, metadata=caused_by(3))]
    )
    assert [n.message.global_position for n in added[0].children] == [5, 6]
    assert [n.message.global_position for n in more] == [5, 6]


def test_a_protean_child_hangs_under_the_parent_its_causation_id_names() -> None:
    """A message in Protean's layout names its cause by the cause's headers.id, or by
    "{stream}-{position}" when the cause has none."""
    plain = CausationNode(Traced.of(message(1, "cart-1")))
    proteans = message(2, "shop::cart-1", {"headers": {"id": "shop::cart-1-1"}})
    protean = CausationNode(Traced.of(proteans))
    children = [
        message(3, "shop::cart-1", {"domain": {"causation_id": "cart-1-0"}}),
        message(4, "shop::cart-1", {"domain": {"causation_id": "shop::cart-1-1"}}),
    ]
    attach({1: plain, 2: protean}, children)
    assert [n.message.global_position for n in plain.children] == [3]
    assert [n.message.global_position for n in protean.children] == [4]


def test_a_message_already_in_the_tree_or_naming_no_parent_is_left_out() -> None:
    """A cycle (a message naming a descendant of itself) or a message whose cause is not among
    the parents adds nothing."""
    one = CausationNode(Traced.of(message(1, metadata=caused_by(1))))
    assert (
        attach({1: one}, [message(1, metadata=caused_by(1)), message(9, metadata=caused_by(8))])
        == []
    )
    assert one.children == []


def test_the_tree_is_the_path_from_the_root_then_the_subtree() -> None:
    """Ancestors, root first, each hold only the next; the focus keeps its own subtree; the
    JSON nests ``caused`` lists and says which message was asked about."""
    focus = CausationNode(Traced.of(message(3, metadata=caused_by(2))))
    attach({3: focus}, [message(4, metadata=caused_by(3))])
    root = build([message(1), message(2, metadata=caused_by(1))], focus)
    tree = CausationTree(root, focus=3)
    walked = [(depth, n.message.global_position) for depth, n in root.walk()]
    assert walked == [(0, 1), (1, 2), (2, 3), (3, 4)]
    document = tree.to_json()
    assert document["focus"] == 3 and document["truncated"] is False
    assert document["root"]["caused"][0]["caused"][0]["caused"][0]["global_position"] == 4
    assert set(document["root"]) == {
        "global_position",
        "stream_name",
        "position",
        "type",
        "id",
        "time",
        "caused",
    }
    assert tree.node(4) is not None and tree.node(5) is None
    json.dumps(document)  # a JSON document as it is
