"""What a holder that lost its lease, or could not renew it, logs: the lease, not the handler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import anyio
import asyncpg
import pytest
import structlog
from structlog.testing import capture_logs

from worker import BaseEvent, Context, NewMessage, on
from worker.engine.batch import Batches
from worker.engine.cursor import Cursor
from worker.engine.lease import Lease
from worker.engine.options import SubscriberOptions
from worker.engine.retry import RetryPolicy
from worker.engine.subscriber import Slot, build_subscriber
from worker.engine.tuning import ConsumerOptions
from worker.errors import LeaseLostError
from worker.testing import (
    MemoryBackend,
    MemoryMessageStore,
    MemoryParkedMessages,
    MemoryPositionStore,
)

pytestmark = pytest.mark.anyio


class Shipped(BaseEvent):
    n: int


@dataclass
class Losing:
    """A lease held until its holder finds out it was taken over."""

    epoch: int
    held: bool = True
    lost: str | None = None


class Notifier:
    """Writes a message per event; here the lease is taken over meanwhile (``take_over``), and
    the newer holder has already written that message (the insert meets its duplicate key)."""

    take_over: Any

    @on(Shipped)
    async def shipped(self, event: Shipped, ctx: Context) -> None:
        self.take_over()
        raise asyncpg.UniqueViolationError('duplicate key value violates "messages_id"')


@pytest.mark.parametrize("noticed", [True, False], ids=["lease-lost", "not-yet-renewed"])
async def test_a_failure_after_the_lease_was_taken_over_is_logged_as_fenced(
    noticed: bool,
) -> None:
    """A handler failure met once the lease is lost (a duplicate key: the newer holder wrote
    the message first) rolls the batch back with ``lease lost; batch rolled back``: no
    ``handler failed; retrying``, nothing parked, no handler failure counted, position kept.
    So too when the holder has not noticed yet (its lease looks held until its next renewal):
    the lease's epoch is no longer the current one."""
    store = MemoryMessageStore()
    await store.write("ship-1", NewMessage("Shipped", {"n": 1}))
    subscriber = build_subscriber(
        Notifier,
        kind="handler",
        options=SubscriberOptions(name="notifier", stream_categories=["ship"]),
    )
    positions, parked = MemoryPositionStore(), MemoryParkedMessages()
    handlers = Notifier()
    lease = Losing(positions.take_lease("notifier:ship"))

    def take_over() -> None:
        positions.take_lease("notifier:ship")  # the newer holder
        if noticed:
            lease.held, lease.lost = False, "consumer taken over (epoch 1)"

    handlers.take_over = take_over
    cursor = Cursor()
    batches = Batches(
        "notifier:ship",
        Slot(subscriber, "ship"),
        handlers,
        MemoryBackend(store, positions=positions, parked=parked),
        cast("Any", lease),
        ConsumerOptions(policy=RetryPolicy(base_delay=0.001, max_delay=0.001)),
        cursor,
        cursor.apply,
        structlog.get_logger(),
    )
    with capture_logs() as logs, pytest.raises(LeaseLostError, match="taken over"):
        await batches.process(await store.read_category("ship", 1, 10))
    events = [e["event"] for e in logs]
    assert events == ["lease lost; batch rolled back"], logs
    assert "UniqueViolationError" in logs[0]["error"]
    assert await parked.parked_streams("notifier:ship") == {}
    assert batches.stats.handler_failures == 0
    assert positions.position_of("notifier:ship") is None


async def test_a_renewal_that_times_out_says_what_timed_out() -> None:
    """A renewal the server does not answer in time is logged with the exception's type and
    what timed out (a timeout's own text is empty), then the holder fences itself."""
    lease = Lease("postgresql://127.0.0.1:1/none", "c:slow", ttl=0.6)

    async def unanswered() -> None:
        await anyio.sleep_forever()

    lease.renew = unanswered  # type: ignore[method-assign]
    assert await _held(lease)
    with capture_logs() as logs, pytest.raises(LeaseLostError, match="not renewed"):
        await lease.hold(anyio.sleep_forever)
    [failed] = [e for e in logs if e["event"] == "lease renewal failed"]
    assert failed["error_type"] == "TimeoutError", failed
    assert failed["error"].startswith("renewal timed out after 0."), failed
    assert failed["error"].endswith(" s"), failed


async def _held(lease: Lease) -> bool:
    """Make ``lease`` held as a take would (for its two thirds of the ttl)."""
    lease._acquired, lease._valid_until = True, anyio.current_time() + lease.ttl * 2 / 3
    return lease.held
