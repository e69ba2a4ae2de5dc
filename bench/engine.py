"""Engine benchmark: catch-up throughput and write-to-projection latency on the genuine MessageDB.

    .venv/bin/python -m bench.engine [--events N] [--quick] [--repeat R]

On a fresh scratch database (``worker_bench_engine`` on the server that
``WORKER_EVENT_STORE__DATABASE_URI`` names, else the embedded PostgreSQL in
``.worker/bench-postgres``) it writes ``N`` Order events (N/10 streams x 10 events), then measures:

- raw asyncpg baselines: a category read in 1,000-row batches, and read + one set-based upsert
  per batch + position, one transaction per batch;
- the engine catching up (``Runner.run(until_caught_up=True)``) with a no-op projector and with
  the example ``order_summary`` projector, each run alternately with its baseline (``--repeat``
  pairs), with the median and range of the per-pair ratios;
- write-to-projection latency at a steady rate, with NOTIFY and with polling only.

Every run is timed whole, from its first connection to its last closed: a baseline's
connections and the creation of its tables count, as the engine's pool and set-up do (what each
drops beforehand does not).

Figures are printed and written to ``bench/results/engine.json``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import asyncpg

from domain import OrderConfirmed, OrderItem, OrderPlaced, OrderShipped
from worker import (
    Domain,
    Message,
    MessageStore,
    Runner,
    configure_logging,
    connect,
    install,
    load_settings,
    on,
)
from worker.admin import (
    MessageDBSettings,
    is_embedded,
    quote_identifier,
    set_notify_trigger,
    start_embedded,
    table_name,
    tune_collector,
    utc_time,
    view_name,
    with_database,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from worker import Context, WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "engine.json"
DATABASE = "worker_bench_engine"
CATEGORY = "order"
BATCH = 1000
EVENTS_PER_STREAM = 10
WINDOW = 250  # streams written interleaved, as orders placed around the same time would be
TARGET_NOOP = 0.75
TARGET_SUMMARY = 0.85
TARGET_P99_MS = 50.0

WRITE = "SELECT message_store.write_message($1, $2, $3, $4, $5, $6)"

# The engine's own column list (worker/store/queries.py), as a plain SELECT by global position.
# Only the data is decoded (by the connection's jsonb codec, orjson), as the engine decodes only
# the data a handler receives; the metadata stays text, as the engine leaves it until asked.
READ = """
SELECT id::text, stream_name, type, position, global_position, data, metadata::text,
       time AT TIME ZONE 'UTC'
FROM message_store.messages
WHERE message_store.category(stream_name) = $1 AND global_position >= $2
ORDER BY global_position
LIMIT $3
"""

BASELINE_DROP = "DROP TABLE IF EXISTS bench_order_summary, bench_positions"

BASELINE_TABLES = """
CREATE TABLE bench_order_summary (
    order_id      text PRIMARY KEY,
    customer_name text,
    status        text NOT NULL,
    item_count    integer,
    total         numeric(12, 2),
    placed_at     timestamptz,
    confirmed_at  timestamptz,
    shipped_at    timestamptz,
    tracking      text,
    events        integer NOT NULL
);
CREATE TABLE bench_positions (consumer text PRIMARY KEY, position bigint NOT NULL);
"""

# One statement per batch: the batch is folded per order first (ON CONFLICT cannot touch a row
# twice in one statement), then merged into the existing rows.
BASELINE_UPSERT = """
INSERT INTO bench_order_summary AS s (order_id, customer_name, status, item_count, total,
    placed_at, confirmed_at, shipped_at, tracking, events)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::numeric[],
    $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::integer[])
ON CONFLICT (order_id) DO UPDATE SET
    customer_name = coalesce(EXCLUDED.customer_name, s.customer_name),
    status = EXCLUDED.status,
    item_count = coalesce(EXCLUDED.item_count, s.item_count),
    total = coalesce(EXCLUDED.total, s.total),
    placed_at = coalesce(EXCLUDED.placed_at, s.placed_at),
    confirmed_at = coalesce(EXCLUDED.confirmed_at, s.confirmed_at),
    shipped_at = coalesce(EXCLUDED.shipped_at, s.shipped_at),
    tracking = coalesce(EXCLUDED.tracking, s.tracking),
    events = s.events + EXCLUDED.events
"""

BASELINE_POSITION = """
INSERT INTO bench_positions (consumer, position) VALUES ('baseline', $1)
ON CONFLICT (consumer) DO UPDATE SET position = EXCLUDED.position
"""

# The per-event statements a hand-written order_summary projector runs (the baseline for
# one round trip per event).
PER_EVENT_PLACED = """
INSERT INTO bench_order_summary (order_id, customer_name, status, item_count, total, placed_at,
    events)
VALUES ($1, $2, 'PENDING', $3, $4, $5, 1)
"""
PER_EVENT_CONFIRMED = """
UPDATE bench_order_summary SET status = 'CONFIRMED', confirmed_at = $2, events = events + 1
WHERE order_id = $1
"""
PER_EVENT_SHIPPED = """
UPDATE bench_order_summary
SET status = 'SHIPPED', shipped_at = $2, tracking = $3, events = events + 1
WHERE order_id = $1
"""

SET_POSITION = """
INSERT INTO worker.positions (consumer, position) VALUES ($1, $2)
ON CONFLICT (consumer) DO UPDATE SET position = EXCLUDED.position
"""


# -- the scratch database ------------------------------------------------------------------


def server_dsn() -> str:
    """The server's ``postgres`` database: the one the environment names, else the embedded one."""
    named = os.environ.get("WORKER_EVENT_STORE__DATABASE_URI")
    if not is_embedded(named):
        assert named is not None
        return with_database(named, "postgres")
    return start_embedded(ROOT / ".worker" / "bench-postgres", "postgres")


async def fresh_database(server: str, database: str = DATABASE) -> str:
    """Drop and create the scratch database; install MessageDB and the worker schema in it."""
    admin = await asyncpg.connect(server)
    try:
        name = quote_identifier(database)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    dsn = with_database(server, database)
    await install(dsn, MessageDBSettings(), notify_trigger=True)
    return dsn


# -- the events ----------------------------------------------------------------------------


def order_events(rng: random.Random, order_id: str, placed: datetime) -> list[Any]:
    """One order's life: placed (3 items), confirmed, then 8 carrier scans (``OrderShipped``).

    Every event after ``OrderPlaced`` is an update the order_summary projector can apply.
    """
    items = [
        OrderItem(
            product_id=f"sku-{rng.randrange(100_000):05d}",
            quantity=rng.randint(1, 4),
            price=Decimal(rng.randrange(100, 20_000)) / 100,
        )
        for _ in range(3)
    ]
    name = f"customer {rng.randrange(1_000_000):06d} of the benchmark shop"
    events: list[Any] = [
        OrderPlaced(order_id=order_id, customer_name=name, items=items),
        OrderConfirmed(order_id=order_id, confirmed_at=placed + timedelta(minutes=5)),
    ]
    carrier = rng.choice(["DHL", "UPS", "GLS", "DPD"])
    for scan in range(EVENTS_PER_STREAM - 2):
        tracking = f"{carrier}-{uuid.UUID(int=rng.getrandbits(128)).hex}-scan{scan}"
        events.append(OrderShipped(order_id=order_id, tracking=tracking))
    return events


def metadata(rng: random.Random) -> dict[str, str]:
    """Eventide-style metadata, as a web request writing the order would leave it."""
    return {
        "correlationStreamName": f"checkout-{uuid.UUID(int=rng.getrandbits(128)).hex}",
        "schemaVersion": "1",
    }


def message_rows(streams: int, seed: int = 7) -> list[tuple[Any, ...]]:
    """write_message arguments for every event, orders interleaved in windows of ``WINDOW``."""
    rng = random.Random(seed)
    placed = datetime(2025, 1, 1, tzinfo=UTC)
    rows: list[tuple[Any, ...]] = []
    for start in range(0, streams, WINDOW):
        window = []
        for _ in range(start, min(start + WINDOW, streams)):
            order_id = uuid.UUID(int=rng.getrandbits(128)).hex
            window.append((f"{CATEGORY}-{order_id}", order_events(rng, order_id, placed)))
        for index in range(EVENTS_PER_STREAM):
            for stream, events in window:
                event = events[index]
                data = event.model_dump(mode="json")
                row_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                rows.append((row_id, stream, event.type_name(), data, metadata(rng), None))
    return rows


async def write_events(dsn: str, streams: int) -> dict[str, float]:
    """Write every event through write_message, 2,000 per transaction; return the figures."""
    rows = message_rows(streams)
    sizes = [len(json.dumps(r[3])) + len(json.dumps(r[4])) for r in rows]
    conn = await connect(dsn)
    try:
        started = time.perf_counter()
        for start in range(0, len(rows), 2 * BATCH):
            async with conn.transaction():
                await conn.executemany(WRITE, rows[start : start + 2 * BATCH])
        elapsed = time.perf_counter() - started
        await conn.execute("VACUUM ANALYZE message_store.messages")
    finally:
        await conn.close()
    return {
        "events": len(rows),
        "streams": streams,
        "write_events_per_s": len(rows) / elapsed,
        "avg_data_bytes": statistics.fmean(len(json.dumps(r[3])) for r in rows),
        "avg_data_metadata_bytes": statistics.fmean(sizes),
    }


# -- raw asyncpg baselines -----------------------------------------------------------------


async def drop_baseline_tables(dsn: str) -> None:
    """Before a baseline's run (not timed, as the engine's ``reset_engine``)."""
    conn = await connect(dsn)
    try:
        await conn.execute(BASELINE_DROP)
    finally:
        await conn.close()


async def check_baseline(dsn: str, count: int) -> None:
    """After a set-based baseline's run (not timed): every event folded in once."""
    conn = await connect(dsn)
    try:
        total = await conn.fetchval("SELECT sum(events) FROM bench_order_summary")
    finally:
        await conn.close()
    assert total == count, f"baseline folded {total} events of {count}"


async def raw_read(dsn: str) -> tuple[int, float]:
    """Read the whole category in 1,000-row batches (data decoded); (events, seconds)."""
    started = time.perf_counter()
    conn = await connect(dsn)
    try:
        count, position = 0, 1
        while rows := await conn.fetch(READ, CATEGORY, position, BATCH):
            count += len(rows)
            position = rows[-1][4] + 1
    finally:
        await conn.close()
    return count, time.perf_counter() - started


async def raw_validated(dsn: str) -> tuple[int, float]:
    """What any engine that hands handlers validated events must do at least: the engine's
    read (its columns, the next batch read on a second connection while this one is
    validated) and each message validated into its event class; no positions, no handlers.
    (events, seconds)."""
    validate = {
        cls.type_name(): cls.__pydantic_validator__.validate_json
        for cls in (OrderPlaced, OrderConfirmed, OrderShipped)
    }
    started = time.perf_counter()
    conns = [await connect(dsn), await connect(dsn)]

    async def read(conn: asyncpg.Connection[Any], after: int) -> list[Message]:
        return await MessageStore(conn).read_category(CATEGORY, after + 1, BATCH)

    try:
        count, turn = 0, 0
        batch = await read(conns[0], 0)
        while batch:
            turn += 1
            ahead: list[list[Message]] = []

            async def read_ahead(
                conn: asyncpg.Connection[Any], after: int, into: list[list[Message]]
            ) -> None:
                into.append(await read(conn, after))

            async with anyio.create_task_group() as tg:
                tg.start_soon(read_ahead, conns[turn % 2], batch[-1][4], ahead)
                await anyio.lowlevel.checkpoint()
                for message in batch:
                    validate[message[2]](message[5])
            count += len(batch)
            batch = ahead[0]
    finally:
        for conn in conns:
            await conn.close()
    return count, time.perf_counter() - started


def fold(rows: list[asyncpg.Record]) -> list[list[Any]]:
    """The batch folded into one order_summary-like row per order (the upsert's columns)."""
    by_order: dict[str, list[Any]] = {}
    for row in rows:
        kind, data, at = row[2], row[5], row[7]
        order_id = data["order_id"]
        summary = by_order.get(order_id)
        if summary is None:
            summary = by_order[order_id] = [
                order_id,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                0,
            ]
        summary[9] += 1
        if kind == "OrderPlaced":
            items = data["items"]
            summary[1:6] = [
                data["customer_name"],
                "PENDING",
                sum(i["quantity"] for i in items),
                sum((Decimal(i["price"]) * i["quantity"] for i in items), Decimal(0)),
                at,
            ]
        elif kind == "OrderConfirmed":
            summary[2] = "CONFIRMED"
            summary[6] = datetime.fromisoformat(data["confirmed_at"])
        elif kind == "OrderShipped":
            summary[2], summary[7], summary[8] = "SHIPPED", at, data["tracking"]
    return list(by_order.values())


async def raw_set_based(dsn: str) -> tuple[int, float]:
    """Read a batch, upsert it folded in one statement + position, one transaction per batch."""
    await drop_baseline_tables(dsn)
    started = time.perf_counter()
    conn = await connect(dsn)
    try:
        await conn.execute(BASELINE_TABLES)
        count, position = 0, 1
        while rows := await conn.fetch(READ, CATEGORY, position, BATCH):
            columns = list(zip(*fold(rows), strict=True))
            async with conn.transaction():
                await conn.execute(BASELINE_UPSERT, *columns)
                await conn.execute(BASELINE_POSITION, rows[-1][4])
            count += len(rows)
            position = rows[-1][4] + 1
    finally:
        await conn.close()
    elapsed = time.perf_counter() - started
    await check_baseline(dsn, count)
    return count, elapsed


def fold_events(rows: list[Message], events: list[Any]) -> list[list[Any]]:
    """``fold`` from the validated events instead of the decoded data."""
    by_order: dict[str, list[Any]] = {}
    for row, event in zip(rows, events, strict=True):
        kind, at = row[2], utc_time(row[7])
        order_id = event.order_id
        summary = by_order.get(order_id)
        if summary is None:
            summary = by_order[order_id] = [
                order_id,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                0,
            ]
        summary[9] += 1
        if kind == "OrderPlaced":
            items = event.items
            summary[1:6] = [
                event.customer_name,
                "PENDING",
                sum(i.quantity for i in items),
                sum((i.price * i.quantity for i in items), Decimal(0)),
                at,
            ]
        elif kind == "OrderConfirmed":
            summary[2] = "CONFIRMED"
            summary[6] = event.confirmed_at
        elif kind == "OrderShipped":
            summary[2], summary[7], summary[8] = "SHIPPED", at, event.tracking
    return list(by_order.values())


async def raw_set_based_validated(dsn: str) -> tuple[int, float]:
    """``raw_set_based`` with what the engine does besides: its read (data as text, the next
    batch read on a second connection meanwhile), each message validated into its event class
    and the batch folded from the events. What any set-based projector handing its code
    validated events must do at least. (events, seconds)"""
    validate = {
        cls.type_name(): cls.__pydantic_validator__.validate_json
        for cls in (OrderPlaced, OrderConfirmed, OrderShipped)
    }
    await drop_baseline_tables(dsn)
    started = time.perf_counter()
    conn, reader = await connect(dsn), await connect(dsn)

    async def read(on: asyncpg.Connection[Any], after: int, into: list[list[Message]]) -> None:
        into.append(await MessageStore(on).read_category(CATEGORY, after + 1, BATCH))

    try:
        await conn.execute(BASELINE_TABLES)
        count = 0
        first: list[list[Message]] = []
        await read(reader, 0, first)
        rows = first[0]
        while rows:
            ahead: list[list[Message]] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(read, reader, rows[-1][4], ahead)
                await anyio.lowlevel.checkpoint()
                events = [validate[row[2]](row[5]) for row in rows]
                columns = list(zip(*fold_events(rows, events), strict=True))
                async with conn.transaction():
                    await conn.execute(BASELINE_UPSERT, *columns)
                    await conn.execute(BASELINE_POSITION, rows[-1][4])
            count += len(rows)
            rows = ahead[0]
    finally:
        await conn.close()
        await reader.close()
    elapsed = time.perf_counter() - started
    await check_baseline(dsn, count)
    return count, elapsed


async def raw_per_event(dsn: str) -> tuple[int, float]:
    """Read a batch, run one statement per event + position, one transaction per batch."""
    await drop_baseline_tables(dsn)
    started = time.perf_counter()
    conn = await connect(dsn)
    try:
        await conn.execute(BASELINE_TABLES)
        count, position = 0, 1
        while rows := await conn.fetch(READ, CATEGORY, position, BATCH):
            async with conn.transaction():
                for row in rows:
                    await conn.execute(*summary_statement(row))
                await conn.execute(BASELINE_POSITION, rows[-1][4])
            count += len(rows)
            position = rows[-1][4] + 1
    finally:
        await conn.close()
    return count, time.perf_counter() - started


def summary_statement(row: asyncpg.Record) -> tuple[Any, ...]:
    """The statement and arguments a per-event order_summary handler runs for one message."""
    kind, data, at = row[2], row[5], row[7]
    if kind == "OrderPlaced":
        items = data["items"]
        total = sum((Decimal(i["price"]) * i["quantity"] for i in items), Decimal(0))
        count = sum(i["quantity"] for i in items)
        return PER_EVENT_PLACED, data["order_id"], data["customer_name"], count, total, at
    if kind == "OrderConfirmed":
        confirmed_at = datetime.fromisoformat(data["confirmed_at"])
        return PER_EVENT_CONFIRMED, data["order_id"], confirmed_at
    return PER_EVENT_SHIPPED, data["order_id"], at, data["tracking"]


# -- the engine ------------------------------------------------------------------------------


def noop_domain() -> Domain:
    """A domain with one projector that does nothing for each Order event type."""
    bench = Domain("bench")

    @bench.projector(name="noop", stream_categories=[CATEGORY])
    class NoOpProjector:
        @on(OrderPlaced, OrderConfirmed, OrderShipped)
        async def any_event(self, event: Any, ctx: Context) -> None:
            pass

    return bench


def summary_domain() -> Domain:
    """The example application's domain with its ``order_summary`` projector registered."""
    import projections  # noqa: F401  (registers order_summary on the example domain)
    from domain import domain

    return domain


async def reset_engine(dsn: str, domain: Domain, name: str) -> None:
    """A first catch-up: forget the projector's position and drop its read models' tables."""
    (subscriber,) = [s for s in domain.subscribers if s.name == name]
    conn = await connect(dsn)
    try:
        generation = await conn.fetchval(
            "DELETE FROM worker.projections WHERE name = $1 RETURNING generation", name
        )
        for model in subscriber.read_models:
            await conn.execute(f"DROP VIEW IF EXISTS {view_name(model)}")
            await conn.execute(f"DROP TABLE IF EXISTS {table_name(model, generation or 1)}")
        for consumer in (subscriber.consumer_name(c) for c in subscriber.categories):
            await conn.execute("DELETE FROM worker.positions WHERE consumer = $1", consumer)
    finally:
        await conn.close()


async def engine_catch_up(
    dsn: str, settings: WorkerSettings, domain: Domain, name: str
) -> tuple[int, float]:
    """Run the one named projector from position 0 until caught up; (events, seconds)."""
    await reset_engine(dsn, domain, name)
    runner = Runner(domain, dsn, settings, only=[name])
    started = time.perf_counter()
    result = await runner.run(until_caught_up=True, handle_signals=False)
    elapsed = time.perf_counter() - started
    return sum(c.processed for c in result.consumers), elapsed


async def check_summary(dsn: str, streams: int, events: int) -> None:
    """The example read model must hold every order with every event applied once."""
    conn = await connect(dsn)
    try:
        rows, applied = await conn.fetchrow("SELECT count(*), sum(events) FROM order_summary")
    finally:
        await conn.close()
    assert (rows, applied) == (streams, events), f"order_summary: {rows} rows, {applied} events"


# -- latency -------------------------------------------------------------------------------


def latency_domain(samples: list[float]) -> Domain:
    """A projector that records, per event, now minus the write time carried in its data."""
    bench = Domain("latency")

    @bench.projector(name="latency", stream_categories=[CATEGORY])
    class LatencyProjector:
        @on(OrderShipped)
        async def shipped(self, event: OrderShipped, ctx: Context) -> None:
            samples.append(time.time() - ctx.message.data["sent_at"])

    return bench


async def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    """Check ``condition`` every 10 ms for up to ``seconds``."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return True
        await anyio.sleep(0.01)
    return condition()


async def write_steady(dsn: str, rate: float, seconds: float) -> int:
    """Write ``OrderShipped`` events at a fixed rate, one per transaction; return how many."""
    conn = await connect(dsn)
    try:
        streams = [
            r[0]
            for r in await conn.fetch(
                "SELECT DISTINCT stream_name FROM message_store.messages LIMIT 100"
            )
        ]
        total = int(rate * seconds)
        started = time.perf_counter()
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
            stream = streams[i % len(streams)]
            data = {"order_id": stream[len(CATEGORY) + 1 :], "tracking": f"live-{i}"}
            data["sent_at"] = time.time()
            await conn.execute(WRITE, str(uuid.uuid4()), stream, "OrderShipped", data, None, None)
        return total
    finally:
        await conn.close()


async def latency(
    dsn: str, settings: WorkerSettings, *, notify: bool, rate: float, seconds: float
) -> dict[str, float]:
    """Write-to-handler latency of a running worker at a steady write rate."""
    conn = await connect(dsn)
    try:
        await set_notify_trigger(conn, notify)
        head = await conn.fetchval("SELECT max(global_position) FROM message_store.messages")
        await conn.execute(SET_POSITION, f"latency:{CATEGORY}", head)
    finally:
        await conn.close()
    samples: list[float] = []
    runner = Runner(latency_domain(samples), dsn, settings.model_copy(update={"notify": notify}))
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(runner.run, handle_signals=False))
        ready = await wait_until(
            lambda: (
                bool(runner.result.consumers)
                and all(c.state == "caught_up" for c in runner.result.consumers)
            ),
            30,
        )
        assert ready, "the latency projector did not start"
        written = await write_steady(dsn, rate, seconds)
        await wait_until(lambda: len(samples) >= written, 10)
        runner.request_stop()
    assert len(samples) == written, f"handled {len(samples)} of {written}"
    cuts = statistics.quantiles([s * 1000 for s in samples], n=100)
    return {
        "events": written,
        "p50_ms": cuts[49],
        "p99_ms": cuts[98],
        "max_ms": max(samples) * 1000,
    }


# -- the run -------------------------------------------------------------------------------


@dataclass
class Options:
    events: int
    repeat: int
    rate: float
    seconds: float


async def median_rate(
    run: Callable[[], Awaitable[tuple[int, float]]], repeat: int, n: int
) -> float:
    """The median events/s of ``repeat`` runs; each must have handled all ``n`` events."""
    rates = []
    for _ in range(repeat):
        count, seconds = await run()
        assert count == n, f"handled {count} of {n} events"
        rates.append(count / seconds)
    return statistics.median(rates)


async def paired_rates(
    baseline: Callable[[], Awaitable[tuple[int, float]]],
    candidate: Callable[[], Awaitable[tuple[int, float]]],
    pairs: int,
    n: int,
) -> tuple[float, float, list[float]]:
    """Baseline and candidate run alternately (ABAB...), ``pairs`` times: their median rates
    and the candidate/baseline ratio of each pair."""
    base_rates, rates, ratios = [], [], []
    for _ in range(pairs):
        for run, found in ((baseline, base_rates), (candidate, rates)):
            count, seconds = await run()
            assert count == n, f"handled {count} of {n} events"
            found.append(count / seconds)
        ratios.append(rates[-1] / base_rates[-1])
    return statistics.median(base_rates), statistics.median(rates), ratios


async def server_info(dsn: str) -> dict[str, Any]:
    conn = await connect(dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "postgresql": version,
    }


async def main(options: Options) -> dict[str, Any]:
    configure_logging("warning")
    settings = load_settings().worker
    # The collector as the worker process sets it (``worker.Runner`` does at its first run),
    # from the start: baselines and engine run under the same settings.
    tune_collector(settings.gc_threshold)
    dsn = await fresh_database(server_dsn())
    streams = options.events // EVENTS_PER_STREAM
    n = streams * EVENTS_PER_STREAM
    figures: dict[str, Any] = {"machine": await server_info(dsn), "repeat": options.repeat}
    figures["write"] = await write_events(dsn, streams)
    noop, summary = noop_domain(), summary_domain()
    pairs = partial(paired_rates, pairs=options.repeat, n=n)
    figures["raw_read"], figures["engine_noop"], figures["noop_ratios"] = await pairs(
        partial(raw_read, dsn), partial(engine_catch_up, dsn, settings, noop, "noop")
    )
    _, figures["raw_validated"], figures["validated_ratios"] = await pairs(
        partial(raw_read, dsn), partial(raw_validated, dsn)
    )
    figures["validated_ratio"] = statistics.median(figures["validated_ratios"])
    (
        figures["raw_set_based"],
        figures["engine_order_summary"],
        figures["order_summary_ratios"],
    ) = await pairs(
        partial(raw_set_based, dsn),
        partial(engine_catch_up, dsn, settings, summary, "order_summary"),
    )
    _, figures["raw_set_based_validated"], figures["set_based_validated_ratios"] = await pairs(
        partial(raw_set_based, dsn), partial(raw_set_based_validated, dsn)
    )
    figures["set_based_validated_ratio"] = statistics.median(figures["set_based_validated_ratios"])
    figures["raw_per_event"] = await median_rate(partial(raw_per_event, dsn), 1, n)
    await check_summary(dsn, streams, n)
    figures["noop_ratio"] = statistics.median(figures["noop_ratios"])
    figures["order_summary_ratio"] = statistics.median(figures["order_summary_ratios"])
    figures["order_summary_per_event_ratio"] = (
        figures["engine_order_summary"] / figures["raw_per_event"]
    )
    if options.seconds <= 0:
        return figures
    steady = {"rate": options.rate, "seconds": options.seconds}
    figures["latency_notify"] = await latency(dsn, settings, notify=True, **steady)
    figures["latency_polling"] = await latency(dsn, settings, notify=False, **steady)
    figures["latency_rate"] = options.rate
    return figures


def report(figures: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    w = figures["write"]
    mark = {True: "met", False: "MISSED"}
    lines = [
        f"{w['events']:,} events in {w['streams']:,} streams; "
        f"avg data {w['avg_data_bytes']:.0f} B, "
        f"data + metadata {w['avg_data_metadata_bytes']:.0f} B",
        "",
        "| measurement | figure | baseline / target |",
        "|---|---|---|",
        f"| write (write_message, 2,000 per transaction) | "
        f"{w['write_events_per_s']:,.0f} events/s | |",
        f"| raw read, 1,000-row batches | {figures['raw_read']:,.0f} events/s | |",
        f"| engine, no-op projector | {figures['engine_noop']:,.0f} events/s | "
        f"{figures['noop_ratio']:.0%} of raw read ({_spread(figures['noop_ratios'])}; "
        f"target >= {TARGET_NOOP:.0%}: "
        f"{mark[figures['noop_ratio'] >= TARGET_NOOP]}) |",
        f"| raw read + validation into event classes, read ahead (no engine) | "
        f"{figures['raw_validated']:,.0f} events/s | {figures['validated_ratio']:.0%} of raw read "
        f"({_spread(figures['validated_ratios'])}): the most a validating engine can reach |",
        f"| raw read + set-based upsert per batch | {figures['raw_set_based']:,.0f} events/s | |",
        f"| raw set-based + validation into event classes, read ahead (no engine) | "
        f"{figures['raw_set_based_validated']:,.0f} events/s | "
        f"{figures['set_based_validated_ratio']:.0%} of raw set-based "
        f"({_spread(figures['set_based_validated_ratios'])}): the most a validating projector "
        "can reach |",
        f"| raw read + one statement per event (INSERT/UPDATE) | {figures['raw_per_event']:,.0f} "
        "events/s | |",
        f"| engine, order_summary projector | {figures['engine_order_summary']:,.0f} events/s | "
        f"{figures['order_summary_ratio']:.0%} of raw set-based "
        f"({_spread(figures['order_summary_ratios'])}; target >= "
        f"{TARGET_SUMMARY:.0%}: {mark[figures['order_summary_ratio'] >= TARGET_SUMMARY]}); "
        f"{figures['order_summary_per_event_ratio']:.0%} of raw per-event |",
    ]
    if "latency_notify" in figures:
        ln, lp = figures["latency_notify"], figures["latency_polling"]
        lines += [
            f"| latency at {figures['latency_rate']:.0f}/s, NOTIFY | p50 {ln['p50_ms']:.1f} ms, "
            f"p99 {ln['p99_ms']:.1f} ms (max {ln['max_ms']:.0f}) | p99 < {TARGET_P99_MS:.0f} ms: "
            f"{mark[ln['p99_ms'] < TARGET_P99_MS]} |",
            f"| latency at {figures['latency_rate']:.0f}/s, polling only | p50 "
            f"{lp['p50_ms']:.1f} ms, p99 {lp['p99_ms']:.1f} ms (max {lp['max_ms']:.0f}) | |",
        ]
    return "\n".join(lines)


def _spread(ratios: list[float]) -> str:
    return f"{len(ratios)} pairs, {min(ratios):.0%}-{max(ratios):.0%}"


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--events", type=int, default=100_000, help="events to write (10 per order)"
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (2,000 events)")
    parser.add_argument(
        "--repeat", type=int, default=5, help="baseline/engine pairs per figure, run alternately"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="latency: events per second")
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="latency: seconds per mode (0: no latency)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        return Options(events=2_000, repeat=1, rate=args.rate, seconds=3.0)
    if args.events < EVENTS_PER_STREAM:
        parser.error(f"--events must be at least {EVENTS_PER_STREAM}")
    return Options(args.events, args.repeat, args.rate, args.seconds)


def revision() -> str:
    """The commit the figures were taken at (``-dirty``: with uncommitted changes)."""
    described = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    )
    return described.stdout.strip()


def run(argv: list[str] | None = None) -> None:
    options = parse(argv)
    figures = anyio.run(main, options)
    figures["machine"]["revision"] = revision()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(report(figures))
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    run()
