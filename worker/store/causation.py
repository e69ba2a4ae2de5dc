"""Causation: what caused a message, up to the root, and everything it caused, as a tree.

A message names its cause in its metadata: in Eventide's layout by
``causationMessageGlobalPosition`` (with ``causationMessageStreamName`` and
``causationMessagePosition``), at the top level or, as this package writes Protean's layout,
under ``extensions``; in Protean's layout by ``domain.causation_id``, the cause's
``headers.id`` (``"{stream_name}-{position}"`` for a cause that has none). ``trace`` follows
those links upward from one message to the first that names no cause (the root), then
downward from the message through everything it caused, across categories, level by level
with one indexed query per level (migration 0007's partial indexes). The tree holds the path
from the root to the message, and the message's whole subtree; children in global order.

One implementation for every reader: the command line renders ``CausationTree``, a console
can render ``to_json()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker.store import queries as q
from worker.store.browser import MessageKey, find_message
from worker.store.layout import metadata_object
from worker.store.message import Message
from worker.store.metadata import (
    CAUSATION_GLOBAL_POSITION,
    CAUSATION_POSITION,
    CAUSATION_STREAM_NAME,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from worker.store.types import Executor

# How many messages a trace gathers at most, below the message and above it: a runaway chain
# (or a cycle written by a faulty client) ends there, and the tree says it was cut.
DEFAULT_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Cause:
    """How a message names its cause: by global position (Eventide's keys), by stream and
    position, or by Protean's message id."""

    global_position: int | None = None
    stream_name: str | None = None
    position: int | None = None
    protean_id: str | None = None


def cause_of(metadata: dict[str, Any]) -> Cause | None:
    """The cause a message's (decoded) metadata names, or ``None`` for a root."""
    for holder in (metadata, metadata.get("extensions")):
        if isinstance(holder, dict):
            found = _eventide_cause(holder)
            if found is not None:
                return found
    domain = metadata.get("domain")
    if isinstance(domain, dict) and isinstance(domain.get("causation_id"), str):
        return Cause(protean_id=domain["causation_id"])
    return None


def _eventide_cause(holder: dict[str, Any]) -> Cause | None:
    global_position = _number(holder.get(CAUSATION_GLOBAL_POSITION))
    stream_name = holder.get(CAUSATION_STREAM_NAME)
    position = _number(holder.get(CAUSATION_POSITION))
    if global_position is None and (not isinstance(stream_name, str) or position is None):
        return None
    return Cause(global_position, stream_name if isinstance(stream_name, str) else None, position)


def _number(value: Any) -> int | None:
    """A position as metadata holds it: a whole number, or its digits as a string."""
    if type(value) is int:  # not isinstance: a bool is no position
        return value if value >= 0 else None
    if type(value) is str and value.isascii() and value.isdigit():
        return int(value)
    return None


def protean_id(message: Message, metadata: dict[str, Any]) -> str:
    """The id a message in Protean's layout names ``message`` by as its cause."""
    headers = metadata.get("headers")
    ident = headers.get("id") if isinstance(headers, dict) else None
    return ident if isinstance(ident, str) else f"{message.stream_name}-{message.position}"


@dataclass(frozen=True, slots=True)
class Traced:
    """One message of a causation tree, as the tree shows it (``protean_id``: the id a message
    in Protean's layout names it by as its cause)."""

    global_position: int
    stream_name: str
    position: int
    type: str
    id: str
    time: str
    protean_id: str

    @classmethod
    def of(cls, message: Message) -> Traced:
        return cls(
            message.global_position,
            message.stream_name,
            message.position,
            message.type,
            message.id,
            message.time.isoformat(),
            protean_id(message, metadata_object(message.metadata_json)),
        )

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _SHOWN}


_SHOWN = ("global_position", "stream_name", "position", "type", "id", "time")


@dataclass(slots=True)
class CausationNode:
    """A message and the messages it caused (in global order)."""

    message: Traced
    children: list[CausationNode] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**self.message.to_json(), "caused": [child.to_json() for child in self.children]}

    def walk(self, depth: int = 0) -> Iterator[tuple[int, CausationNode]]:
        """This node and every node below it, depth first (so in the tree's order), with their
        depth."""
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


@dataclass(frozen=True, slots=True)
class CausationTree:
    """The causation of one message (``focus``, its global position): the path from the root
    that caused it, and all it caused. ``missing_cause`` is a cause the topmost message names
    that the store does not hold; ``truncated`` says the trace stopped at its limit."""

    root: CausationNode
    focus: int
    missing_cause: Cause | None = None
    truncated: bool = False

    def node(self, global_position: int) -> CausationNode | None:
        """The node of the message at ``global_position``, if the tree holds it."""
        for _, found in self.root.walk():
            if found.message.global_position == global_position:
                return found
        return None

    def to_json(self) -> dict[str, Any]:
        """The tree as one JSON document (each message with its ``caused`` list)."""
        missing = self.missing_cause
        return {
            "focus": self.focus,
            "root": self.root.to_json(),
            "missing_cause": None if missing is None else _cause_json(missing),
            "truncated": self.truncated,
        }


def _cause_json(cause: Cause) -> dict[str, Any]:
    return {name: getattr(cause, name) for name in Cause.__slots__}


def build(ancestors: Sequence[Message], focus: CausationNode) -> CausationNode:
    """The tree's root: ``ancestors`` (root first) each with the next as its one child, the
    last with ``focus``."""
    node = focus
    for message in reversed(ancestors):
        node = CausationNode(Traced.of(message), [node])
    return node


def attach(parents: dict[int, CausationNode], caused: Sequence[Message]) -> list[CausationNode]:
    """Hang each of ``caused`` under the one of ``parents`` (by global position) it names as
    its cause; return the new nodes, in global order. Messages already in ``parents`` (a
    cycle) and those naming no parent there are left out. Pure: the tree's building block."""
    by_id = {node.message.protean_id: node for node in parents.values()}
    added = []
    for message in caused:
        parent = _parent(cause_of(metadata_object(message.metadata_json)), parents, by_id)
        if parent is None or message.global_position in parents:
            continue
        child = CausationNode(Traced.of(message))
        parent.children.append(child)
        added.append(child)
    return added


def _parent(
    cause: Cause | None, parents: dict[int, CausationNode], by_id: dict[str, CausationNode]
) -> CausationNode | None:
    if cause is None:
        return None
    if cause.global_position is not None:
        return parents.get(cause.global_position)
    if cause.protean_id is not None:
        return by_id.get(cause.protean_id)
    return None


# -- reading the store ----------------------------------------------------------------------


async def trace(
    executor: Executor, key: MessageKey, *, limit: int = DEFAULT_LIMIT
) -> CausationTree:
    """The causation tree of the message at global position ``key`` or with id ``key``
    (``MessageNotFoundError`` when there is none): its causes up to the root, and everything
    it caused, at most ``limit`` messages each way."""
    focus = await find_message(executor, key)
    ancestors, missing = await _ancestors(executor, focus, limit)
    below = CausationNode(Traced.of(focus))
    truncated = await _descend(executor, below, limit)
    truncated = truncated or len(ancestors) >= limit
    return CausationTree(build(ancestors, below), focus.global_position, missing, truncated)


async def _ancestors(
    executor: Executor, message: Message, limit: int
) -> tuple[list[Message], Cause | None]:
    """The causes of ``message``, root first, and a cause named but not found (if any)."""
    found: list[Message] = []
    seen = {message.global_position}
    while len(found) < limit:
        cause = cause_of(metadata_object(message.metadata_json))
        if cause is None:
            return found, None
        parent = await _cause_message(executor, cause)
        if parent is None:
            return found, cause
        if parent.global_position in seen:  # a cycle: stop where it closes
            return found, None
        seen.add(parent.global_position)
        found.insert(0, parent)
        message = parent
    return found, None


async def _cause_message(executor: Executor, cause: Cause) -> Message | None:
    """The message ``cause`` names, or ``None`` when the store does not hold it."""
    if cause.global_position is not None:
        row = await executor.fetchrow(
            q.READ_BY_GLOBAL_POSITION, cause.global_position, record_class=Message
        )
    elif cause.stream_name is not None and cause.position is not None:
        row = await executor.fetchrow(
            q.READ_AT_STREAM_POSITION, cause.stream_name, cause.position, record_class=Message
        )
    else:
        row = await _by_protean_id(executor, cause.protean_id or "")
    found: Message | None = row
    return found


async def _by_protean_id(executor: Executor, ident: str) -> Message | None:
    """The message with Protean id ``ident``: by its ``headers.id``, else, for a cause in
    Eventide's layout, by the ``"{stream_name}-{position}"`` the id spells."""
    row: Message | None = await executor.fetchrow(q.READ_BY_PROTEAN_ID, ident, record_class=Message)
    if row is not None:
        return row
    stream_name, _, position = ident.rpartition("-")
    if not stream_name or not position.isdigit():
        return None
    row = await executor.fetchrow(
        q.READ_AT_STREAM_POSITION, stream_name, int(position), record_class=Message
    )
    return row


async def _descend(executor: Executor, top: CausationNode, limit: int) -> bool:
    """Grow ``top``'s subtree level by level (one query per level); True when it was cut at
    ``limit`` messages."""
    frontier = {top.message.global_position: top}
    gathered = 0
    while frontier:
        caused = await executor.fetch(
            q.CAUSED_BY,
            [str(position) for position in frontier],
            [node.message.protean_id for node in frontier.values()],
            limit - gathered + 1,
            record_class=Message,
        )
        if gathered + len(caused) > limit:
            return True
        added = attach(frontier, caused)
        gathered += len(added)
        frontier = {node.message.global_position: node for node in added}
    return False
