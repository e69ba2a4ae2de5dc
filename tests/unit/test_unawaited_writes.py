"""A handler that does not await ``ctx.write`` loses no message: its message fails (retried, then
parked) naming the handler, in memory with the engine's own batches."""

from __future__ import annotations

import gc
import warnings
from typing import Any

import pytest

from worker import BaseEvent, Context, Domain, ReadModel, handle, on
from worker.testing import in_stream, project

pytestmark = pytest.mark.anyio

domain = Domain("unawaited")


@domain.event(category="tick")
class Ticked(BaseEvent):
    n: int


@domain.event(category="tock")
class Tocked(BaseEvent):
    n: int


TICKS = [*in_stream("tick-1", *(Ticked(n=n) for n in range(3))), *in_stream("tick-2", Ticked(n=9))]


@domain.event_handler(name="sync_writer")
class SyncWriter:
    @handle(Ticked)
    def ticked(self, event: Ticked, ctx: Context) -> None:
        ctx.write(f"tock-{event.n}", Tocked(n=event.n))


@domain.event_handler(name="forgetful")
class Forgetful:
    @handle(Ticked)
    async def ticked(self, event: Ticked, ctx: Context) -> None:
        ctx.write(f"tock-{event.n}", Tocked(n=event.n))


@domain.event_handler(name="concurrent", concurrency=4)
class ConcurrentForgetful:
    @handle(Ticked)
    async def ticked(self, event: Ticked, ctx: Context) -> None:
        ctx.write(f"tock-{event.n}", Tocked(n=event.n))


@domain.event_handler(name="returner")
class Returner:
    @handle(Ticked)
    def ticked(self, event: Ticked, ctx: Context) -> Any:
        return ctx.write(f"tock-{event.n}", Tocked(n=event.n))


@domain.event_handler(name="raiser")
class Raiser:
    @handle(Ticked)
    async def ticked(self, event: Ticked, ctx: Context) -> None:
        ctx.write(f"tock-{event.n}", Tocked(n=event.n))
        raise ValueError("gave up")


class Tick(ReadModel):
    __table__ = "unawaited_ticks"
    __key__ = "n"

    n: int


@domain.projector(name="peeker", read_models=[Tick])
class Peeker:
    @on(Ticked)
    def ticked(self, event: Ticked, ctx: Context) -> None:
        if ctx.table(Tick).get(event.n) is not None:  # (a coroutine: never None)
            ctx.table(Tick).put(Tick(n=event.n))


async def run_recording_warnings(cls: type[Any]) -> tuple[Any, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = await project(cls, TICKS, domain=domain, max_attempts=2)
        gc.collect()
    return result, caught


async def test_a_sync_handler_calling_ctx_write_parks_every_message_it_would_lose() -> None:
    """A plain method cannot await ``ctx.write``: each message fails with the handler's name and
    "ctx.write was not awaited", is retried, then parked; nothing is written, nothing warns."""
    result, caught = await run_recording_warnings(SyncWriter)
    assert result.emitted == []
    assert [p.message.global_position for p in result.parked] == [1, 2, 3, 4]
    head = result.parked[0]
    assert head.failure is not None and head.failure.attempts == 2
    assert type(head.failure.error).__name__ == "NotAwaitedError"
    assert str(head.failure.error).startswith("SyncWriter.ticked: ctx.write was not awaited")
    assert [w.message for w in caught] == []


async def test_an_async_handler_not_awaiting_ctx_write_fails_its_message() -> None:
    """An ``async def`` handler that forgets ``await`` before ``ctx.write`` fails the same way."""
    result, caught = await run_recording_warnings(Forgetful)
    assert result.emitted == []
    assert len(result.parked) == 4
    assert "Forgetful.ticked: ctx.write was not awaited" in str(result.parked[0].failure.error)  # type: ignore[union-attr]
    assert [w.message for w in caught] == []


async def test_concurrent_partitions_fail_an_unawaited_write_too() -> None:
    """With ``concurrency=4`` each partition's handler is checked on its own."""
    result, caught = await run_recording_warnings(ConcurrentForgetful)
    assert result.emitted == []
    assert len(result.parked) == 4
    error = str(result.parked[0].failure.error)  # type: ignore[union-attr]
    assert "ConcurrentForgetful.ticked: ctx.write was not awaited" in error
    assert [w.message for w in caught] == []


async def test_a_write_a_sync_handler_returns_is_awaited_for_it() -> None:
    """A plain method that returns its ``ctx.write`` has it awaited: every message is written."""
    result, caught = await run_recording_warnings(Returner)
    assert [m.stream_name for m in result.emitted] == ["tock-0", "tock-1", "tock-2", "tock-9"]
    assert result.parked == []
    assert [w.message for w in caught] == []


async def test_a_failing_handler_leaves_no_never_awaited_warning() -> None:
    """A handler that raises after an un-awaited write is parked for its own error; the write,
    dropped, raises no "coroutine was never awaited" warning."""
    result, caught = await run_recording_warnings(Raiser)
    assert result.emitted == []
    assert str(result.parked[0].failure.error) == "gave up"  # type: ignore[union-attr]
    assert [w.message for w in caught] == []


async def test_a_table_read_not_awaited_fails_its_message() -> None:
    """``ctx.table(Model).get`` is handed out too: a handler that does not await it fails with
    the read named, rather than go on with a coroutine for a row."""
    result, caught = await run_recording_warnings(Peeker)
    assert result.rows(Tick) == []
    assert str(result.parked[0].failure.error) == (  # type: ignore[union-attr]
        "Peeker.ticked: ctx.table(Tick).get was not awaited: await it, in a handler declared "
        "async def"
    )
    assert [w.message for w in caught] == []
