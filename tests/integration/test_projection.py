"""Projections: batched read models, reset, blue/green and in-place rebuilds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
from structlog.testing import capture_logs

import domain as shop
import projections  # noqa: F401  (registers the example projectors on the shop domain)
from tests.shop import assert_folded, read_statuses, read_summary, write_orders
from worker import Runner
from worker.engine.lease import Lease
from worker.engine.positions import PostgresPositionStore
from worker.engine.rebuild import find_projector, rebuild
from worker.ops.settings import WorkerSettings

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio

SETTINGS = WorkerSettings(batch_size=100, retry_base_delay=0.001, poll_interval_max=0.05)


async def catch_up(dsn: str, settings: WorkerSettings = SETTINGS) -> None:
    runner = Runner(shop.domain, dsn, settings, only=["order_summary", "orders_by_status"])
    await runner.run(until_caught_up=True, handle_signals=False)


async def reset(pool: asyncpg.Pool[Any], dsn: str, consumer: str, to: int) -> None:
    lease = Lease(dsn, consumer)
    assert await lease.try_acquire()
    try:
        await PostgresPositionStore(pool).set(consumer, to)
    finally:
        await lease.release()


async def test_per_event_handlers_fold_every_order_exactly(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """order_summary and orders_by_status equal the fold of all events."""
    fold = await write_orders(store, 400)
    await catch_up(database_dsn)
    await assert_folded(pool, fold)


@pytest.mark.parametrize("to", ["zero", "middle"])
async def test_reset_then_replay_gives_the_clean_build(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str, to: str
) -> None:
    """Reset to 0 or to a middle position: replaying changes no row twice."""
    fold = await write_orders(store, 300)
    await catch_up(database_dsn)
    head = await store.category_head("order")
    assert head is not None
    for consumer in ("order_summary:order", "orders_by_status:order"):
        await reset(pool, database_dsn, consumer, 0 if to == "zero" else head // 2)
    await catch_up(database_dsn)
    await assert_folded(pool, fold)
    more = await write_orders(store, 50, seed=2)
    await catch_up(database_dsn)
    fold.orders.update(more.orders)
    await assert_folded(pool, fold)


async def test_reset_to_just_before_the_head_replays_the_head_exactly_once(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Reset to head - 1: the one message replayed is the last one applied, exactly at the
    high-water mark, so it is replayed in exact mode; the read models equal the clean build."""
    fold = await write_orders(store, 300)
    await catch_up(database_dsn)
    head = await store.category_head("order")
    assert head is not None
    last = (await store.read_category("order", head))[0]
    assert last.type == "OrderShipped"  # a change that would count twice if applied again
    for consumer in ("order_summary:order", "orders_by_status:order"):
        await reset(pool, database_dsn, consumer, head - 1)
    await catch_up(database_dsn)
    await assert_folded(pool, fold)


async def test_blue_green_rebuild_never_shows_a_partial_table(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A reader querying during a rebuild sees the whole old table or the whole new one."""
    fold = await write_orders(store, 600)
    await catch_up(database_dsn)
    expected = (await read_summary(pool), await read_statuses(pool))
    subscriber = find_projector(shop.domain.subscribers, "order_summary")
    seen: list[int] = []
    done = anyio.Event()

    async def reader() -> None:
        async with pool.acquire() as conn:
            while not done.is_set():
                async with conn.transaction(isolation="repeatable_read"):
                    observed = (await read_summary(conn), await read_statuses(conn))
                assert observed == expected
                seen.append(len(observed[0]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        outcome = await rebuild(
            database_dsn,
            pool,
            SETTINGS.model_copy(update={"batch_size": 50}),
            subscriber,
        )
        done.set()
    assert outcome.generation == 2 and len(seen) > 3
    await assert_folded(pool, fold)
    tables = await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE tablename LIKE 'order%' ORDER BY 1"
    )
    assert [t[0] for t in tables] == ["order_summary__g2", "orders_by_status__g1"]


async def test_a_live_worker_carries_on_with_the_new_generation(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A running worker is fenced at the switch, reloads, and keeps projecting new events."""
    fold = await write_orders(store, 200)
    runner = Runner(shop.domain, database_dsn, SETTINGS, only=["order_summary", "orders_by_status"])
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        with anyio.fail_after(20):
            while await pool.fetchval("SELECT count(*) FROM worker.positions") == 0:
                await anyio.sleep(0.02)
            await rebuild(
                database_dsn,
                pool,
                SETTINGS,
                find_projector(shop.domain.subscribers, "order_summary"),
            )
            more = await write_orders(store, 100, seed=3)
            fold.orders.update(more.orders)
            while await read_summary(pool) != fold.orders:
                await anyio.sleep(0.05)
        runner.request_stop()
    await assert_folded(pool, fold)


async def test_in_place_rebuild_replays_from_zero(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    fold = await write_orders(store, 150)
    await catch_up(database_dsn)
    await pool.execute("UPDATE order_summary__g1 SET total = 0")  # damage it
    await rebuild(
        database_dsn,
        pool,
        SETTINGS,
        find_projector(shop.domain.subscribers, "order_summary"),
        in_place=True,
    )
    await assert_folded(pool, fold)


def tally_domain(*, version: int, with_total: bool, group_size: int = 1) -> Any:
    """A projector counting deposits per account; v2 may add a column to its read model."""
    from worker import BaseEvent, Context, Domain, Increment, ReadModel, on

    domain = Domain("tally")

    @domain.event(category="till")
    class Paid(BaseEvent):
        account: str
        amount: int

    class TallyV1(ReadModel):
        __table__ = "tally"
        __key__ = "account"
        account: str
        payments: int = 0

    class TallyV2(TallyV1):
        total: int = 0

    model = TallyV2 if with_total else TallyV1

    @domain.projector(
        name="tally",
        stream_categories=["till"],
        read_models=[model],
        version=version,
        group_size=group_size,
    )
    class Tally:
        @on(Paid)
        def paid(self, event: Any, ctx: Context) -> None:
            changes: dict[str, Any] = {"payments": Increment(1)}
            if with_total:
                changes["total"] = Increment(event.amount)
            ctx.table(model).add(event.account, **changes)

    return domain


async def pay(store: MessageStore, count: int) -> None:
    from worker import NewMessage

    for n in range(count):
        await store.write(
            f"till-{n % 3}", NewMessage("Paid", {"account": f"a{n % 3}", "amount": n})
        )


async def tally(pool: asyncpg.Pool[Any]) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await pool.fetch("SELECT * FROM tally ORDER BY account")]


async def test_changed_columns_hold_the_projection_back_until_rebuilt(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """New columns in code, old tables in the database: the projector's consumers do not run
    (nothing gets parked); `rebuild` builds the new tables and it runs again."""
    await pay(store, 30)
    first = Runner(tally_domain(version=1, with_total=False), database_dsn, SETTINGS)
    await first.run(until_caught_up=True, handle_signals=False)
    await pay(store, 3)
    changed = tally_domain(version=2, with_total=True)
    held = Runner(changed, database_dsn, SETTINGS)
    await held.run(until_caught_up=True, handle_signals=False)
    assert held.result.needs_rebuild == ["tally"]
    assert await pool.fetchval("SELECT count(*) FROM worker.dead_letters") == 0
    assert [r[:2] for r in await tally(pool)] == [("a0", 10), ("a1", 10), ("a2", 10)]

    await rebuild(database_dsn, pool, SETTINGS, find_projector(changed.subscribers, "tally"))
    # 30 payments of n (n = 0..29), then 3 more of 0, 1, 2: account a{k} got n % 3 == k.
    totals = {f"a{k}": sum(n for n in range(30) if n % 3 == k) + k for k in range(3)}
    assert [r[:3] for r in await tally(pool)] == [(a, 11, totals[a]) for a in sorted(totals)]


async def test_auto_rebuild_switches_a_changed_projection_on_its_own(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """With auto_rebuild, a worker finding the version and columns changed rebuilds blue/green
    and then carries on with the new generation."""
    await pay(store, 30)
    await Runner(tally_domain(version=1, with_total=False), database_dsn, SETTINGS).run(
        until_caught_up=True, handle_signals=False
    )
    auto = SETTINGS.model_copy(update={"auto_rebuild": True})
    runner = Runner(tally_domain(version=2, with_total=True), database_dsn, auto)
    await runner.run(until_caught_up=True, handle_signals=False)
    assert runner.result.needs_rebuild == []
    totals = {f"a{k}": sum(n for n in range(30) if n % 3 == k) for k in range(3)}
    assert [r[:3] for r in await tally(pool)] == [(a, 10, totals[a]) for a in sorted(totals)]
    assert await pool.fetchrow(
        "SELECT generation, code_version FROM worker.projections WHERE name = 'tally'"
    ) == (2, "2")


async def test_applications_read_models_by_key_and_by_filters(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """`get` by key and `find` with equality filters, order and limit, on the live view."""
    from projections.order_summary import OrderSummary

    fold = await write_orders(store, 60)
    await catch_up(database_dsn)
    some_id, (status, items, total, events) = next(iter(fold.orders.items()))
    row = await OrderSummary.get(pool, some_id)
    assert row is not None
    assert (row.status, row.item_count, row.total, row.events) == (status, items, total, events)
    assert await OrderSummary.get(pool, "no-such-order") is None

    shipped = await OrderSummary.find(pool, status="SHIPPED", order_by="-total")
    assert {r.order_id for r in shipped} == {k for k, v in fold.orders.items() if v[0] == "SHIPPED"}
    assert [r.total for r in shipped] == sorted((r.total for r in shipped), reverse=True)
    pending = await OrderSummary.find(pool, status="PENDING", tracking=None, limit=2)
    assert len(pending) == min(2, fold.statuses()["PENDING"])
    with pytest.raises(ValueError, match=r"no column\(s\) \['colour'\]"):
        await OrderSummary.find(pool, colour="red")


async def test_resizing_a_consumer_group_keeps_the_read_model_exact(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """From 1 consumer to a group of 3 and then 2: new slots start where the old ones were and
    replay what some of them had already applied without changing a row twice."""
    paid = 0

    async def pay_more(count: int) -> None:
        nonlocal paid
        from worker import NewMessage

        for n in range(paid, paid + count):
            await store.write(
                f"till-{n % 7}", NewMessage("Paid", {"account": f"a{n % 7}", "amount": n})
            )
        paid += count

    def expected() -> list[tuple[Any, ...]]:
        return [(f"a{k}", len(range(k, paid, 7)), sum(range(k, paid, 7))) for k in range(7)]

    for size in (1, 3, 2):
        await pay_more(40)
        domain = tally_domain(version=1, with_total=True, group_size=size)
        await Runner(domain, database_dsn, SETTINGS).run(until_caught_up=True, handle_signals=False)
        assert [r[:3] for r in await tally(pool)] == expected(), f"group of {size}"
    names = [r[0] for r in await pool.fetch("SELECT consumer FROM worker.positions ORDER BY 1")]
    assert {"tally:till@0/2", "tally:till@1/2", "tally:till@0/3"} <= set(names)


async def test_a_resize_while_a_member_lags_starts_new_members_at_the_least_position(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A group of 2 whose member 1 lags behind member 0 is resized to 3: the group is handed
    over with both final positions, every new member starts at the lagging member's position
    (leaving out what member 0 had applied), so nothing member 1 had not applied yet is
    skipped and nothing is applied twice."""
    from worker import NewMessage

    paid = 0

    async def pay_more(count: int) -> None:
        nonlocal paid
        for n in range(paid, paid + count):
            await store.write(
                f"till-{n % 7}", NewMessage("Paid", {"account": f"a{n % 7}", "amount": n})
            )
        paid += count

    def run(size: int, only: list[str] | None = None) -> Any:
        domain = tally_domain(version=1, with_total=True, group_size=size)
        return Runner(domain, database_dsn, SETTINGS, only=only).run(
            until_caught_up=True, handle_signals=False
        )

    await pay_more(40)
    await run(2)
    await pay_more(40)
    await run(2, only=["tally:till@0/2"])
    ahead = await position_of(pool, "tally:till@0/2")
    lagging = await position_of(pool, "tally:till@1/2")
    assert lagging < ahead
    with capture_logs() as logs:
        await run(3)
    handed = [e for e in logs if e["event"] == "consumer group handed over"]
    assert [(e["from_size"], e["size"], e["handed"], e["start"]) for e in handed] == [
        (2, 3, [ahead, lagging], lagging)
    ]
    assert [r[:3] for r in await tally(pool)] == [
        (f"a{k}", len(range(k, paid, 7)), sum(range(k, paid, 7))) for k in range(7)
    ]


async def position_of(pool: asyncpg.Pool[Any], consumer: str) -> int:
    value = await pool.fetchval(
        "SELECT position FROM worker.positions WHERE consumer = $1", consumer
    )
    assert value is not None, f"{consumer} has no position"
    return int(value)


async def test_a_version_change_alone_keeps_the_live_tables_updated_until_the_switch(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Same columns, new version, auto_rebuild: the live consumer keeps running while the next
    generation is built, and the switch leaves an exact table."""
    await pay(store, 30)
    await Runner(tally_domain(version=1, with_total=False), database_dsn, SETTINGS).run(
        until_caught_up=True, handle_signals=False
    )
    auto = SETTINGS.model_copy(update={"auto_rebuild": True})
    runner = Runner(tally_domain(version=2, with_total=False), database_dsn, auto)
    await runner.run(until_caught_up=True, handle_signals=False)
    assert [c.processed for c in runner.result.consumers] == [0]  # live was already at the head
    assert [r[:2] for r in await tally(pool)] == [("a0", 10), ("a1", 10), ("a2", 10)]
    assert await pool.fetchrow(
        "SELECT generation, code_version FROM worker.projections WHERE name = 'tally'"
    ) == (2, "2")
