"""Closing what consumers' runs left open."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable


class Closable(Protocol):
    async def close(self) -> None: ...


async def close_all(
    consumers: Iterable[Closable], *others: Callable[[], Coroutine[Any, Any, Any]]
) -> None:
    """Close what the consumers' runs left open, and ``others`` (a pool's ``close``), side by
    side; shielded, and given up after five seconds."""
    with anyio.move_on_after(5, shield=True):
        async with anyio.create_task_group() as tg:
            for closing in (*others, *(consumer.close for consumer in consumers)):
                tg.start_soon(closing)
