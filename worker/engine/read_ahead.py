"""Reading the next batch while this one is applied, and validating it meanwhile.

The read overlaps the batch's handlers and commit, on another connection. While the batch
waits on the database (its read-model changes and its commit), the batch read ahead is
validated into its events: work the handlers would otherwise wait for. Validation has no
effects; an event that fails it is left to the handlers' turn, which fails it where it always
did.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from worker.engine.routes import at_first_version
from worker.store.metadata import SCHEMA_VERSION

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from worker.engine.routes import Handlers
    from worker.model.event import BaseEvent
    from worker.store.message import Message

_VALIDATED_AT_ONCE = 64  # messages validated ahead between two turns of the batch's task


class ReadAhead:
    """One consumer's next batch, read and validated while the current one is applied."""

    def __init__(self, routes: dict[str, Handlers]) -> None:
        self._routes = routes
        self.ready: dict[int, BaseEvent] = {}  # the current batch's events, validated ahead
        self._waits: anyio.Event | None = None  # set when the batch waits on the database

    def batch_waits(self) -> None:
        """The batch being applied waits on the database: validate the next one meanwhile."""
        if self._waits is not None:
            self._waits.set()

    async def around(
        self,
        batch: Sequence[Message],
        apply: Callable[[], Awaitable[None]],
        read: Callable[[int], Awaitable[list[Message]]],
    ) -> list[Message] | None:
        """Run ``apply()`` (``batch``'s) while the next batch is read (``read(after)``);
        that batch, or ``None`` when its read failed (the caller reads again)."""
        ahead: list[list[Message]] = []
        ready: dict[int, BaseEvent] = {}
        failure: Exception | None = None
        waits = self._waits = anyio.Event()
        handled = False

        async def read_ahead() -> None:
            with contextlib.suppress(Exception):
                ahead.append(await read(batch[-1].global_position))
            if ahead:
                await waits.wait()
                await self._validate(ahead[0], ready, lambda: handled)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_ahead)
            await anyio.lowlevel.checkpoint()  # the read is sent before the handlers start
            try:
                await apply()
            except Exception as error:
                failure = error
                tg.cancel_scope.cancel()
            finally:
                self._waits, handled = None, True
                waits.set()
        self.ready = ready if failure is None else {}
        if failure is not None:
            raise failure
        return ahead[0] if ahead else None

    async def _validate(
        self, batch: Sequence[Message], ready: dict[int, BaseEvent], handled: Callable[[], bool]
    ) -> None:
        """Validate the messages of ``batch`` into ``ready`` until ``handled()`` (the batch
        before it is done), a few at a time so that the batch's statements go on meanwhile."""
        routes = self._routes
        for start in range(0, len(batch), _VALIDATED_AT_ONCE):
            if handled():
                return
            for message in batch[start : start + _VALIDATED_AT_ONCE]:
                route = routes.get(message[2])
                if route is None or route.upcast is not None:
                    continue
                meta = message[6]
                if meta is not None and SCHEMA_VERSION in meta and not at_first_version(meta):
                    continue  # decoded in turn: its version is checked
                try:
                    ready[message[4]] = route.validate(message[5] or "{}")
                except Exception:  # it fails again in the handlers' turn
                    continue
            await anyio.lowlevel.checkpoint()
