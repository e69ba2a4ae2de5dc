"""``worker events check``: does every stored message still decode with today's code?

Reads the store in global order, in batches, and decodes every message of a registered type
with the current event classes and upcasters; counts per type and keeps each type's first
failure (stream, position, error). Meant for CI before a deploy: a change to an event class
that old messages no longer fit shows here, not in production.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.errors import MalformedMessageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.domain import Domain
    from worker.store.message_store import MessageStore


@dataclass
class TypeCheck:
    """What the check found for one message type."""

    checked: int = 0
    failed: int = 0
    first_failure: dict[str, object] | None = None


@dataclass
class EventsCheck:
    """The whole check: per type, and where it got to."""

    types: dict[str, TypeCheck] = field(default_factory=dict)
    last_position: int = 0

    @property
    def checked(self) -> int:
        return sum(t.checked for t in self.types.values())

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.types.values())


async def check_events(
    store: MessageStore,
    domain: Domain,
    *,
    start: int = 1,
    batch_size: int = 10_000,
    on_batch: Callable[[EventsCheck], None] | None = None,
) -> EventsCheck:
    """Decode every stored message of a registered type from global position ``start``."""
    types = sorted({name for cls in domain.events for name in (cls.type_name(), *cls.__aliases__)})
    result = EventsCheck(last_position=start - 1)
    while batch := await store.read_all(result.last_position + 1, batch_size, types=types):
        for message in batch:
            found = result.types.setdefault(message.type, TypeCheck())
            found.checked += 1
            try:
                domain.decode(message)
            except MalformedMessageError as error:
                found.failed += 1
                if found.first_failure is None:
                    found.first_failure = {
                        "stream_name": message.stream_name,
                        "position": message.position,
                        "global_position": message.global_position,
                        "error": str(error),
                    }
        result.last_position = batch[-1].global_position
        if on_batch is not None:
            on_batch(result)
    return result
