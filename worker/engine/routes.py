"""Routing: which handler methods a message type goes to, and how its data becomes an event."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeAlias

from worker.model.event import decode, decoder, needs_upcasting
from worker.store.conventions import EVENTIDE
from worker.store.metadata import SCHEMA_VERSION

if TYPE_CHECKING:
    from worker.engine.context import Context
    from worker.engine.subscriber import Subscriber
    from worker.model.event import BaseEvent
    from worker.store.message import Message

# How many versions past a class's own its newer types are recognised (and parked) by, where
# types name their version.
NEWER_VERSIONS = 100

Call: TypeAlias = tuple[Callable[..., Any], bool]  # a bound handler method; is it async


@dataclass(frozen=True, slots=True)
class Handlers:
    """What to do with one message type: validate its JSON, then call the handlers."""

    event_class: type[BaseEvent]
    calls: tuple[Call, ...]
    validate: Callable[[str], BaseEvent]
    single: Callable[..., Any] | None  # the one handler, when it is async
    single_sync: Callable[..., Any] | None  # the one handler, when it is a plain function
    # Decodes a whole message: checks the schema version it states, upcasts older payloads.
    checked: Callable[[Message], BaseEvent]
    # For a class past version 1: ``checked`` (``validate`` then only serves messages known to
    # be current). For a class at version 1, ``validate`` serves every message that states no
    # version or version 1 (see ``at_first_version``), ``checked`` the others.
    upcast: Callable[[Message], BaseEvent] | None = None

    @classmethod
    def of(cls, event_class: type[BaseEvent], calls: tuple[Call, ...]) -> Handlers:
        one = calls[0] if len(calls) == 1 else None
        checked = decoder(event_class)
        return cls(
            event_class,
            calls,
            event_class.__pydantic_validator__.validate_json,
            one[0] if one is not None and one[1] else None,
            one[0] if one is not None and not one[1] else None,
            checked,
            checked if needs_upcasting(event_class) else None,
        )

    def decode(self, message: Message) -> BaseEvent:
        """The message's event (pydantic's ``ValidationError`` when its data does not fit;
        ``MalformedMessageError`` for a bad or newer schema version, or an upcaster that fails)."""
        if self.upcast is None and at_first_version(message[6]):
            return self.validate(message[5] or "{}")
        return self.checked(message)

    async def call_all(self, event: BaseEvent, ctx: Context) -> None:
        """Call every handler of the type, in registration order."""
        for call, is_async in self.calls:
            returned = await call(event, ctx) if is_async else call(event, ctx)
            if returned is not None or ctx.unawaited:
                await settle(call, returned, ctx)

    async def settle_single(self, returned: Any, ctx: Context) -> None:
        """``settle`` for the one handler of the type (the batches' fast path)."""
        await settle(self.calls[0][0], returned, ctx)

    async def dispatch(self, message: Message, ctx: Context) -> None:
        """Decode (and upcast) and handle one message (the slow path: replays)."""
        event = decode(self.event_class, message)
        ctx.message = message
        await self.call_all(event, ctx)


async def settle(call: Callable[..., Any], returned: Any, ctx: Context) -> None:
    """After a handler returned: await what it returned if it is awaitable (a coroutine of a
    method not declared ``async``, or a ``ctx.write`` handed back), then refuse the writes it
    did not await (``NotAwaitedError``), which would otherwise be lost."""
    if inspect.isawaitable(returned):
        await returned
    if ctx.unawaited:
        raise ctx.not_awaited(call)


_KEY = f'"{SCHEMA_VERSION}"'
# The key with version 1, as jsonb prints it and as orjson writes it.
_ONE1, _ONE2, _ONE3, _ONE4, _ONE5, _ONE6 = (
    _KEY + value for value in (': "1"', ": 1,", ": 1}", ':"1"', ":1,", ":1}")
)


def at_first_version(metadata_json: str | None) -> bool:
    """Whether a message's metadata (as stored, JSON text) states no schema version or version 1,
    read from the text without decoding it: the fast path of a class at version 1 (the engine
    tests ``SCHEMA_VERSION not in metadata_json`` inline first). The key mentioned once,
    followed by 1: top-level or nested, the version is 1. Operators and one count only: this
    runs for every message of a class at version 1 that Eventide-style writers sent."""
    if metadata_json is None or _KEY not in metadata_json:
        return True
    return (
        _ONE1 in metadata_json
        or _ONE2 in metadata_json
        or _ONE3 in metadata_json
        or _ONE4 in metadata_json
        or _ONE5 in metadata_json
        or _ONE6 in metadata_json
    ) and metadata_json.count(_KEY) == 1


def route_table(subscriber: Subscriber, instance: Any) -> dict[str, Handlers]:
    """Message type (and every alias) -> the handlers of ``instance`` for it."""
    by_class: dict[type[BaseEvent], list[Call]] = {}
    for route in subscriber.routes:
        method = getattr(instance, route.method_name)
        by_class.setdefault(route.event_class, []).append((method, route.is_async))
    table: dict[str, Handlers] = {}
    for cls, calls in by_class.items():
        handlers = Handlers.of(cls, tuple(calls))
        for type_name in (cls.type_name(), *cls.__aliases__):
            table[type_name] = handlers
        # Where a type names its version (Protean's ``.v<n>``), a newer version's type is no
        # unknown type to skip: it goes to the class's full decoding, which parks it as newer.
        newer = replace(handlers, upcast=handlers.checked)
        conventions = cls.__conventions__ or EVENTIDE
        for type_name in conventions.newer_types(cls.type_name(), NEWER_VERSIONS):
            table.setdefault(type_name, newer)
    return table
