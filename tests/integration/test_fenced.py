"""A holder whose lease was taken over while its handler ran: what it meets is logged as the
fence it is, not as a handler failure."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from structlog.testing import capture_logs

from tests.integration.test_engine import FAST, Deposited, deposit_one
from worker import Context, Domain, NewMessage, Runner, handle
from worker.engine.context import _IDS

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio

CONSUMER = "notifier:acct"


def notifier_domain(entered: anyio.Event, go_on: anyio.Event) -> Domain:
    """A handler that emits one message per deposit, once ``go_on`` is set."""
    domain = Domain("test")
    domain.register_event(Deposited, category="acct")

    @domain.event_handler(name="notifier", stream_categories=["acct"])
    class Notifier:
        @handle(Deposited)
        async def deposited(self, event: Deposited, ctx: Context) -> None:
            entered.set()
            await go_on.wait()
            await ctx.write("note-1", NewMessage("Noted", {"account": event.account}))

    return domain


async def test_a_duplicate_key_after_a_takeover_is_logged_as_fenced_not_retried(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """While the holder's handler runs, a newer holder takes the lease and writes the message
    the handler emits; the holder's insert meets the duplicate key. It logs ``lease lost;
    batch rolled back`` (no ``handler failed; retrying``), parks nothing, and stands by."""
    await deposit_one(store, "acct-1", "a1", 0)
    entered, go_on = anyio.Event(), anyio.Event()
    runner = Runner(notifier_domain(entered, go_on), database_dsn, FAST)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: runner.run(handle_signals=False))
            with anyio.fail_after(10):
                await entered.wait()
            # The newer holder: a new epoch, and the message the handler is about to write.
            await pool.execute(
                "UPDATE worker.leases SET epoch = epoch + 1, owner = 'newer:1' WHERE consumer = $1",
                CONSUMER,
            )
            source = (await store.read_stream("acct-1"))[0]
            ident = str(uuid.uuid5(_IDS, f"{CONSUMER}/{source.id}/1"))
            await store.write("note-1", NewMessage("Noted", {"account": "a1"}, id=ident))
            go_on.set()
            with anyio.fail_after(10):
                while not any(e["event"] == "lease lost; waiting to take it back" for e in logs):
                    await anyio.sleep(0.01)
            runner.request_stop()
    events = [e["event"] for e in logs]
    fenced = [e for e in logs if e["event"] == "lease lost; batch rolled back"]
    assert len(fenced) == 1 and "UniqueViolationError" in fenced[0]["error"], events
    assert "handler failed; retrying" not in events, events
    assert "message parked" not in events, events
    assert await pool.fetchval("SELECT count(*) FROM worker.dead_letters") == 0
    assert await store.read_stream("note-1") != []
