"""Stream-wise concurrency (``concurrency=n``, ``partition_by``) on the engine's own batches,
run in memory by the testing kit's harness."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from worker import BaseEvent, Context, Domain, Increment, ReadModel, handle, on
from worker.engine.partitions import SerialConnection, partitions, run_partitions
from worker.errors import RegistrationError
from worker.testing import MemoryTable, in_stream, project

pytestmark = pytest.mark.anyio

domain = Domain("shop")


@domain.event(category="order")
class Placed(BaseEvent):
    order: str
    customer: str
    n: int


class Totals(ReadModel):
    __table__ = "customer_totals"
    __key__ = "customer"

    customer: str
    orders: int = 0
    last: int = 0


class Recorder:
    """Counts handlers in flight and records each stream's messages in the order handled."""

    def __init__(self, fail: set[tuple[str, int]] | None = None) -> None:
        self.in_flight = 0
        self.most = 0
        self.seen: dict[str, list[int]] = {}
        self.calls: list[tuple[str, int]] = []
        self.fail = fail or set()

    async def handle(self, event: Placed, ctx: Context) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            self.calls.append((event.order, event.n))
            await anyio.sleep(0.001)
            if (event.order, event.n) in self.fail:
                raise RuntimeError(f"cannot handle {event.order}/{event.n}")
            # The message is this task's own, even while other partitions run.
            assert ctx.message.stream_name == f"order-{event.order}"
            self.seen.setdefault(event.order, []).append(event.n)
            await ctx.write(f"receipt-{event.order}", Placed(**event.model_dump()))
        finally:
            self.in_flight -= 1


@domain.event_handler(name="notifier", concurrency=8)
class Notifier:
    def __init__(self) -> None:
        self.recorder = Recorder()

    @handle(Placed)
    async def placed(self, event: Placed, ctx: Context) -> None:
        await self.recorder.handle(event, ctx)


@domain.event_handler(name="sequential")
class Sequential:
    def __init__(self) -> None:
        self.recorder = Recorder()

    @handle(Placed)
    async def placed(self, event: Placed, ctx: Context) -> None:
        await self.recorder.handle(event, ctx)


@domain.projector(
    name="totals",
    read_models=[Totals],
    concurrency=4,
    partition_by=lambda message: message.data["customer"],
)
class CustomerTotals:
    @on(Placed)
    async def placed(self, event: Placed, ctx: Context) -> None:
        await anyio.lowlevel.checkpoint()
        ctx.table(Totals).add(event.customer, orders=Increment(1), last=event.n)


def orders(streams: int, per_stream: int) -> list[Any]:
    """``per_stream`` orders of each stream, interleaved across streams."""
    return [
        *(
            message
            for n in range(per_stream)
            for s in range(streams)
            for message in in_stream(f"order-{s}", Placed(order=str(s), customer=f"c{s % 3}", n=n))
        )
    ]


async def test_partitions_run_concurrently_each_stream_in_order() -> None:
    """Up to ``concurrency`` streams are handled at once; each stream's messages in order,
    each exactly once; the position passes the whole batch."""
    handler = Notifier()
    result = await project(Notifier, orders(20, 5), domain=domain, instance=handler)
    recorder = handler.recorder
    assert recorder.most == 8
    assert recorder.seen == {str(s): list(range(5)) for s in range(20)}
    assert len(recorder.calls) == 100
    assert result.positions == {"notifier:order": 100}
    assert len(result.emitted) == 100


async def test_what_concurrent_handlers_write_is_what_sequential_ones_write() -> None:
    """ctx.write ids derive from (consumer, message, n): the same messages as one at a time."""
    concurrent = await project(Notifier, orders(5, 3), domain=domain, instance=Notifier())
    sequential_handler = Sequential()
    sequential = await project(Sequential, orders(5, 3), domain=domain, instance=sequential_handler)
    assert sequential_handler.recorder.most == 1

    def receipts(result: Any) -> dict[str, list[int]]:
        by_stream: dict[str, list[int]] = {}
        for m in result.emitted:
            by_stream.setdefault(m.stream_name, []).append(m.data["n"])
        return by_stream

    assert receipts(concurrent) == receipts(sequential)
    assert all(n == sorted(n) for n in receipts(concurrent).values())


async def test_a_failing_partition_parks_behind_its_message_while_the_others_finish() -> None:
    """The failing message is retried and parked; its stream's later messages are parked
    behind it; every other stream is handled exactly once overall (the batch that failed
    rolled back, so its writes count once)."""
    handler = Notifier()
    handler.recorder.fail = {("3", 1)}
    result = await project(Notifier, orders(10, 4), domain=domain, instance=handler, max_attempts=2)
    calls = handler.recorder.calls
    assert ("3", 2) not in calls and ("3", 3) not in calls
    assert [(p.stream_name, p.position, p.blocked_by is not None) for p in result.parked] == [
        ("order-3", 1, False),
        ("order-3", 2, True),
        ("order-3", 3, True),
    ]
    assert handler.recorder.calls.count(("3", 1)) == 2
    receipts: dict[str, list[int]] = {}
    for m in result.emitted:  # committed ones only
        receipts.setdefault(m.stream_name, []).append(m.data["n"])
    expected = {f"receipt-{s}": list(range(4)) for s in range(10)}
    expected["receipt-3"] = [0]
    assert receipts == expected
    assert result.positions == {"notifier:order": 40}


async def test_partition_by_keeps_one_customers_orders_in_order() -> None:
    """Partitioned by customer, streams of one customer share a partition: the last order
    number written is the customer's newest, and every order counts once."""
    result = await project(CustomerTotals, orders(9, 4), domain=domain)
    assert {r.customer: (r.orders, r.last) for r in result.rows(Totals)} == {
        "c0": (12, 3),
        "c1": (12, 3),
        "c2": (12, 3),
    }
    sequential = await project(CustomerTotals, orders(9, 4), domain=domain, batch_size=1)
    assert sequential.rows(Totals) == result.rows(Totals)


class SlowReads(MemoryTable):
    """A table whose reads wait, as on PostgreSQL: other handlers run meanwhile."""

    async def _fetch(self, keys: list[Any]) -> dict[Any, tuple[ReadModel, int]]:
        await anyio.lowlevel.checkpoint()
        return await super()._fetch(keys)


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
async def test_handlers_reading_one_row_at_once_each_see_the_others_changes(exact: bool) -> None:
    """Partitions share a batch's tables: handlers that read the same row while another one's
    read of it is under way, then change it, each see the changes made before theirs (a read
    that ends later does not replace the row with what it fetched)."""
    table = SlowReads(Totals, position=lambda: 1, exact=exact)

    async def count(n: int) -> None:
        if await table.get("c1") is None:
            table.put(Totals(customer="c1", orders=1, last=n))
        else:
            table.update("c1", orders=Increment(1), last=n)

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(count, n)
    await table.flush()
    assert [(r.customer, r.orders) for r in table.rows()] == [("c1", 5)]


async def test_a_message_partition_by_fails_for_is_parked_and_the_others_go_on() -> None:
    """``partition_by`` raising for one message (or giving something unhashable) fails that
    message as a handler would: retried, then parked with its stream behind it."""
    other = Domain("partitioned")
    other.register_event(Placed, category="order")
    seen: list[tuple[str, int]] = []

    @other.event_handler(
        name="by_region", concurrency=4, partition_by=lambda m: m.metadata["region"]
    )
    class ByRegion:
        @handle(Placed)
        async def placed(self, event: Placed, ctx: Context) -> None:
            seen.append((event.order, event.n))

    events = [
        *in_stream("order-1", Placed(order="1", customer="c", n=0), metadata={"region": "eu"}),
        *in_stream("order-2", Placed(order="2", customer="c", n=0)),  # no metadata at all
        *in_stream("order-3", Placed(order="3", customer="c", n=0), metadata={"region": ["x"]}),
        *in_stream("order-1", Placed(order="1", customer="c", n=1), metadata={"region": "eu"}),
        *in_stream("order-2", Placed(order="2", customer="c", n=1), metadata={"region": "us"}),
    ]
    result = await project(ByRegion, events, domain=other, max_attempts=2)
    assert sorted(set(seen)) == [("1", 0), ("1", 1)]
    assert [(p.stream_name, p.position, p.blocked_by is not None) for p in result.parked] == [
        ("order-2", 0, False),
        ("order-3", 0, False),
        ("order-2", 1, True),
    ]
    assert isinstance(result.parked[0].error, TypeError)  # metadata None is not subscriptable
    assert "partition_by" in "".join(getattr(result.parked[1].error, "__notes__", []))
    assert result.positions == {"by_region:order": 5}


def test_partitions_group_a_batch_in_order() -> None:
    batch: list[Any] = [(None, s) for s in ["a", "b", "a", "c", "b", "a"]]
    assert partitions(batch, range(6), lambda m: m[1]) == [[0, 2, 5], [1, 4], [3]]
    assert partitions(batch, [1, 2, 3], lambda m: m[1]) == [[1], [2], [3]]


async def test_the_first_failure_stops_every_partition_and_is_raised_as_it_is() -> None:
    started: list[int] = []

    async def handle(group: list[int]) -> None:
        started.append(group[0])
        if group[0] == 2:
            raise ValueError("two")
        await anyio.sleep(1)

    with anyio.fail_after(0.5), pytest.raises(ValueError, match="two"):
        await run_partitions([[0], [1], [2], [3], [4]], 3, handle)
    assert started == [0, 1, 2]


STATEMENTS = [
    "execute",
    "executemany",
    "fetch",
    "fetchrow",
    "fetchval",
    "fetchmany",
    "copy_from_query",
    "copy_from_table",
    "copy_to_table",
    "copy_records_to_table",
    # Not named by SerialConnection: every other coroutine method takes turns too.
    "add_listener",
    "set_type_codec",
]


class OneAtATime:
    """A connection that, like asyncpg's, cannot run two operations at once; ``proxied``: its
    methods are plain functions returning coroutines, as a pool's connection proxy has them."""

    def __init__(self, *, proxied: bool = False) -> None:
        self.busy = False
        self.proxied = proxied

    def __getattr__(self, name: str) -> Any:
        if name not in STATEMENTS:
            raise AttributeError(name)

        async def run(query: str, *args: Any) -> str:
            assert not self.busy, "two statements at once"
            self.busy = True
            await anyio.sleep(0.001)
            self.busy = False
            return query

        if self.proxied:
            return lambda *args: run(*args)
        return run


@pytest.mark.parametrize("proxied", [False, True], ids=["connection", "pool-proxy"])
@pytest.mark.parametrize("method", STATEMENTS)
async def test_statements_on_a_shared_connection_take_turns(method: str, proxied: bool) -> None:
    shared = SerialConnection(OneAtATime(proxied=proxied))  # type: ignore[arg-type]
    results: list[str] = []

    async def query(n: int) -> None:
        results.append(await getattr(shared, method)(str(n)))

    async with anyio.create_task_group() as tg:
        for n in range(10):
            tg.start_soon(query, n)
    assert sorted(results) == [str(n) for n in range(10)]


@pytest.mark.parametrize("method", ["transaction", "prepare", "cursor"])
def test_what_would_run_outside_the_turns_is_refused_on_a_shared_connection(method: str) -> None:
    """A transaction is the batch's; a prepared statement or a cursor runs its statements
    later, outside the turns the partitions take."""
    shared = SerialConnection(OneAtATime())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match=f"cannot (open a transaction|use {method})"):
        getattr(shared, method)("SELECT 1")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be an integer >= 1"),
        ({"concurrency": "8"}, "concurrency must be an integer >= 1"),
        ({"concurrency": True}, "concurrency must be an integer >= 1"),
        ({"concurrency": 4, "partition_by": "customer"}, "partition_by must be a function"),
        ({"partition_by": lambda m: m.stream_name}, "partition_by needs concurrency > 1"),
    ],
)
def test_bad_concurrency_options_fail_at_registration(
    options: dict[str, Any], message: str
) -> None:
    other = Domain("other")
    other.register_event(Placed, category="order")
    with pytest.raises(RegistrationError, match=message):

        @other.event_handler(name="bad", **options)
        class Bad:
            @handle(Placed)
            async def placed(self, event: Placed, ctx: Context) -> None:
                pass
