"""On PostgreSQL: a handler that does not await ``ctx.write`` loses no message. Each such
message fails naming the handler, is retried, then parked; nothing is written for it."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

import pytest

from worker import BaseEvent, Context, Domain, NewMessage, Runner, handle
from worker.engine.backend import PostgresBackend
from worker.engine.consumer import Consumer
from worker.engine.tuning import ConsumerOptions
from worker.engine.wakeups import Waker
from worker.errors import ReplayFailedError
from worker.ops.settings import WorkerSettings

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio

FAST = WorkerSettings(
    batch_size=50,
    max_attempts=2,
    retry_base_delay=0.001,
    retry_max_delay=0.01,
    poll_interval_max=0.05,
)


class Ordered(BaseEvent):
    n: int


class Shipped(BaseEvent):
    n: int


def shop(*, forget: bool = True, fail: bool = False, concurrency: int = 1) -> Domain:
    """A domain whose handler ships every order; ``forget``: it calls ``ctx.write`` from a plain
    method (the write is never awaited); ``fail``: it raises instead."""
    domain = Domain("shop")
    domain.register_event(Ordered, category="order")
    domain.register_event(Shipped, category="shipping")

    @domain.event_handler(name="shipper", concurrency=concurrency)
    class Shipper:
        @handle(Ordered)
        def ordered(self, event: Ordered, ctx: Context) -> Any:
            if fail:
                raise RuntimeError("not yet")
            write = ctx.write(f"shipping-{event.n}", Shipped(n=event.n))
            return None if forget else write

    return domain


async def order(store: MessageStore, count: int) -> None:
    for n in range(count):
        await store.write(f"order-{n}", NewMessage("Ordered", {"n": n}))


async def parked(pool: asyncpg.Pool[Any]) -> list[Any]:
    return list(
        await pool.fetch(
            "SELECT global_position, attempts, error_type, error FROM worker.dead_letters"
            " ORDER BY global_position"
        )
    )


@pytest.mark.parametrize("concurrency", [1, 4], ids=["sequential", "concurrent"])
async def test_every_message_whose_write_was_not_awaited_is_parked(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str, concurrency: int
) -> None:
    """26 orders handled by a plain method calling ``ctx.write``: 26 messages parked, each
    after its retries, with an error naming the handler; no shipping message exists; the
    position is at the head."""
    await order(store, 26)
    await Runner(shop(concurrency=concurrency), database_dsn, FAST).run(
        until_caught_up=True, handle_signals=False
    )
    gc.collect()  # a never-awaited write would warn here (warnings are errors)
    rows = await parked(pool)
    assert len(rows) == 26
    assert {r["error_type"] for r in rows} == {"NotAwaitedError"}
    assert {r["attempts"] for r in rows} == {2}
    assert rows[0]["error"].startswith("Shipper.ordered: ctx.write was not awaited")
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM message_store.messages WHERE category(stream_name) = 'shipping'"
        )
        == 0
    )


async def test_a_replay_whose_write_is_not_awaited_fails_and_keeps_the_message_parked(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A parked message replayed by a handler that forgets to await ``ctx.write`` fails the
    replay with that error; the message stays parked and nothing is written."""
    await order(store, 1)
    await Runner(shop(fail=True), database_dsn, FAST).run(
        until_caught_up=True, handle_signals=False
    )
    consumer = Consumer(
        shop().subscribers[0],
        "order",
        PostgresBackend(database_dsn, pool, store),
        waker=Waker(),
        options=ConsumerOptions(),
    )
    assert await consumer.lease.try_acquire()
    try:
        with pytest.raises(ReplayFailedError) as caught:
            await consumer.replay("order-0")
    finally:
        await consumer.lease.release()
    assert "Shipper.ordered: ctx.write was not awaited" in str(caught.value)
    gc.collect()
    rows = await parked(pool)
    assert [r["error_type"] for r in rows] == ["NotAwaitedError"]
    assert await store.read_stream("shipping-0") == []


async def test_a_write_a_plain_method_returns_is_written(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A plain method that returns its ``ctx.write`` has it awaited: every order ships once."""
    await order(store, 3)
    await Runner(shop(forget=False), database_dsn, FAST).run(
        until_caught_up=True, handle_signals=False
    )
    assert await parked(pool) == []
    assert [len(await store.read_stream(f"shipping-{n}")) for n in range(3)] == [1, 1, 1]
