"""Traces along causation on the genuine MessageDB: one business request is one trace across
every handler it sets off (``worker.engine.spans``), through retries, parking and replays, and
with partitions handled concurrently; a message without a ``traceparent`` starts a trace."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from worker import BaseEvent, Context, Domain, MessageStore, NewMessage, Runner, handle
from worker.engine import operations
from worker.ops.instruments import Instruments
from worker.ops.log import configure_logging
from worker.ops.settings import WorkerSettings
from worker.store import tracing

if TYPE_CHECKING:
    from collections.abc import Iterator

    import asyncpg
    from opentelemetry.sdk.trace import ReadableSpan

pytestmark = pytest.mark.anyio

SETTINGS = WorkerSettings(
    batch_size=50, retry_base_delay=0.001, retry_max_delay=0.01, poll_interval_max=0.05
)


class Ordered(BaseEvent):
    order: str


class Notify(BaseEvent):
    """A command, to ``notify:command-{order}``."""

    order: str


class Notified(BaseEvent):
    order: str


@dataclass
class Probe:
    """What the handlers saw, and which orders fail (how many more times: -1 for always)."""

    failing: dict[str, int] = field(default_factory=dict)
    last: list[str] = field(default_factory=list)

    def maybe_fail(self, order: str) -> None:
        left = self.failing.get(order, 0)
        if left:
            self.failing[order] = left - 1
            raise RuntimeError(f"cannot notify {order}")


def chain_domain(probe: Probe, *, concurrency: int = 1, max_attempts: int = 3) -> Domain:
    """``Ordered`` -> (orders) ``Notify`` command -> (notifier) ``Notified`` -> (audit)."""
    domain = Domain("test")
    domain.register_event(Ordered, category="order")
    domain.register_event(Notify, category="notify:command")
    domain.register_event(Notified, category="notified")

    @domain.event_handler(
        name="orders",
        stream_categories=["order"],
        concurrency=concurrency,
        max_attempts=max_attempts,
    )
    class Orders:
        @handle(Ordered)
        async def ordered(self, event: Ordered, ctx: Context) -> None:
            probe.maybe_fail(event.order)
            await ctx.write(f"notify:command-{event.order}", Notify(order=event.order))

    @domain.event_handler(name="notifier", stream_categories=["notify:command"])
    class Notifier:
        @handle(Notify)
        async def notify(self, event: Notify, ctx: Context) -> None:
            await ctx.write(f"notified-{event.order}", Notified(order=event.order))

    @domain.event_handler(name="audit", stream_categories=["notified"])
    class Audit:
        @handle(Notified)
        async def notified(self, event: Notified, ctx: Context) -> None:
            probe.last.append(event.order)

    return domain


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every span ended kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.start(provider)
    try:
        yield exporter
    finally:
        tracing.stop()
        provider.shutdown()


async def request(store: MessageStore, order: str) -> int:
    """The application's write of ``Ordered`` inside a span of its own; its trace id."""
    active = tracing.active()
    assert active is not None
    with active.tracer.start_as_current_span(f"request {order}") as span:
        await store.write(f"order-{order}", Ordered(order=order).to_message())
        trace_id: int = span.get_span_context().trace_id
    return trace_id


@contextlib.contextmanager
def json_logs() -> Iterator[list[dict[str, Any]]]:
    """The worker's own log processors and JSON lines, captured (decoded at the end)."""
    saved = structlog.get_config()
    configure_logging("info", "json")
    structlog.configure(
        logger_factory=structlog.testing.CapturingLoggerFactory(), cache_logger_on_first_use=False
    )
    factory = structlog.get_config()["logger_factory"]
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        structlog.configure(**saved)
        lines.extend(json.loads(call.args[0]) for call in factory.logger.calls)


async def run_chain(domain: Domain, dsn: str, hops: int = 3) -> None:
    """Catch every consumer up, once per hop (each hop writes what the next one reads)."""
    for _ in range(hops):
        await Runner(domain, dsn, SETTINGS).run(until_caught_up=True, handle_signals=False)


def named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


def one(exporter: InMemorySpanExporter, name: str, order: str) -> ReadableSpan:
    """The span called ``name`` whose message is of ``order``'s streams."""
    found = [
        s
        for s in named(exporter, name)
        if str((s.attributes or {}).get("worker.stream", "")).endswith(f"-{order}")
    ]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.span_id


def trace_of(span: ReadableSpan) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.trace_id


async def test_a_request_and_every_handler_it_sets_off_are_one_trace(
    store: MessageStore, database_dsn: str, spans: InMemorySpanExporter
) -> None:
    """A write inside the application's span, a handler writing a command, a handler writing
    an event and the handler of that event: one trace, each handling span the child of the
    span that wrote its message; the written messages carry the W3C traceparent."""
    trace_id = await request(store, "o1")
    await run_chain(chain_domain(Probe()), database_dsn)
    [root] = named(spans, "request o1")
    ordered = one(spans, "handle Ordered", "o1")
    notify = one(spans, "handle Notify", "o1")
    notified = one(spans, "handle Notified", "o1")
    assert {trace_of(s) for s in (root, ordered, notify, notified)} == {trace_id}
    assert parent_id(ordered) == span_id(root)
    assert parent_id(notify) == span_id(ordered)
    assert parent_id(notified) == span_id(notify)
    attributes = notify.attributes or {}
    assert attributes["worker.handler"] == "Notifier.notify"
    assert attributes["worker.attempt"] == 1
    assert attributes["worker.outcome"] == "handled"
    assert attributes["worker.parked"] is False
    [command] = await store.read_stream("notify:command-o1")
    assert command.metadata is not None
    traceparent = f"00-{trace_id:032x}-{span_id(ordered):016x}-"  # then the trace flags
    assert command.metadata["traceparent"].startswith(traceparent)
    assert attributes["worker.global_position"] == command.global_position


async def test_a_batch_span_links_to_the_traces_of_its_messages(
    store: MessageStore, database_dsn: str, spans: InMemorySpanExporter
) -> None:
    """A batch of messages of three requests has no parent: it links to each message's
    context and says which positions it applied and how it ended."""
    traces = {await request(store, order) for order in ("o1", "o2", "o3")}
    await run_chain(chain_domain(Probe()), database_dsn, hops=1)
    [batch] = named(spans, "batch orders")
    assert batch.parent is None
    assert {link.context.trace_id for link in batch.links} == traces
    attributes = batch.attributes or {}
    assert attributes["worker.batch.size"] == 3
    assert attributes["worker.category"] == "order"
    assert attributes["worker.outcome"] == "committed"
    assert attributes["worker.batch.last_global_position"] == await store.category_head("order")


async def test_a_retried_message_stays_in_its_trace_with_the_failure_recorded(
    store: MessageStore, database_dsn: str, spans: InMemorySpanExporter
) -> None:
    """A handler failing once: the failed attempt's span has status ERROR and the exception,
    a retry span follows, the second attempt's span succeeds; all in the request's trace, and
    the chain goes on from the attempt that succeeded."""
    trace_id = await request(store, "o1")
    with json_logs() as lines:
        await run_chain(chain_domain(Probe(failing={"o1": 1})), database_dsn)
    attempts = sorted(
        (s for s in named(spans, "handle Ordered")),
        key=lambda s: (s.attributes or {})["worker.attempt"],
    )
    assert [(s.attributes or {})["worker.attempt"] for s in attempts] == [1, 2]
    failed, succeeded = attempts
    assert failed.status.status_code == StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert "cannot notify o1" in str((failed.events[0].attributes or {})["exception.message"])
    assert succeeded.status.status_code == StatusCode.UNSET
    retry = one(spans, "retry Ordered", "o1")
    assert {trace_of(s) for s in (failed, succeeded, retry)} == {trace_id}
    notify = one(spans, "handle Notify", "o1")
    assert (trace_of(notify), parent_id(notify)) == (trace_id, span_id(succeeded))
    [retrying] = [line for line in lines if line["event"] == "handler failed; retrying"]
    assert (retrying["trace_id"], retrying["span_id"]) == (
        f"{trace_id:032x}",
        f"{span_id(retry):016x}",
    )
    assert (retrying["stream_name"], retrying["correlation"]) == ("order-o1", None)


async def test_a_parked_message_and_its_replay_join_the_original_trace(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str, spans: InMemorySpanExporter
) -> None:
    """A message that keeps failing is parked (a park span, status ERROR); replayed after the
    fix, its replay and handling spans are in the request's trace, and so is the rest of the
    chain."""
    probe = Probe(failing={"o1": -1})
    domain = chain_domain(probe, max_attempts=2)
    trace_id = await request(store, "o1")
    await run_chain(domain, database_dsn, hops=1)
    park = one(spans, "park Ordered", "o1")
    assert (park.attributes or {})["worker.parked"] is True
    assert park.status.status_code == StatusCode.ERROR
    probe.failing.clear()
    replayed = await operations.replay(
        pool, database_dsn, SETTINGS, domain, "orders:order", "order-o1"
    )
    assert (replayed.count, replayed.left) == (1, 0)
    await run_chain(domain, database_dsn, hops=2)
    replay = one(spans, "replay Ordered", "o1")
    handled = [
        s for s in named(spans, "handle Ordered") if s.status.status_code == StatusCode.UNSET
    ]
    assert len(handled) == 1
    assert parent_id(handled[0]) == span_id(replay)
    notified = one(spans, "handle Notified", "o1")
    assert {trace_of(s) for s in (park, replay, handled[0], notified)} == {trace_id}
    assert probe.last == ["o1"]


async def test_concurrent_partitions_keep_each_message_in_its_own_trace(
    store: MessageStore, database_dsn: str, spans: InMemorySpanExporter
) -> None:
    """With ``concurrency > 1`` each message's span is in its own request's trace, the child
    of that request's span, and so is what its handler wrote."""
    orders = [f"o{n}" for n in range(6)]
    traces = {order: await request(store, order) for order in orders}
    await run_chain(chain_domain(Probe(), concurrency=4), database_dsn)
    roots = {s.name.split()[-1]: s for s in named(spans, "request ")}
    for order in orders:
        ordered = one(spans, "handle Ordered", order)
        notified = one(spans, "handle Notified", order)
        assert trace_of(ordered) == trace_of(notified) == traces[order]
        assert parent_id(ordered) == span_id(roots[order])


async def test_a_message_written_without_a_traceparent_starts_a_trace(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str, spans: InMemorySpanExporter
) -> None:
    """A foreign writer's message (no trace context in its metadata) is handled in a span
    that starts a trace, and the chain it sets off continues that trace."""
    await pool.execute(
        "SELECT message_store.write_message($1, 'order-f1', 'Ordered', $2::jsonb, $3::jsonb)",
        NewMessage("Ordered", {}).id,
        {"order": "f1"},
        {"correlationStreamName": "shop-1"},
    )
    await run_chain(chain_domain(Probe()), database_dsn)
    ordered = one(spans, "handle Ordered", "f1")
    notified = one(spans, "handle Notified", "f1")
    assert ordered.parent is None
    assert trace_of(notified) == trace_of(ordered)
    assert not any(s.name.startswith("request") for s in spans.get_finished_spans())


async def test_the_prometheus_metrics_are_read_by_an_opentelemetry_metric_reader(
    store: MessageStore, database_dsn: str
) -> None:
    """With the metrics service, an OpenTelemetry reader sees the numbers ``/metrics``
    shows: counters, gauges, and the histograms' sums and counts, labelled by consumer."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    for order in ("o1", "o2", "o3"):
        await store.write(f"order-{order}", Ordered(order=order).to_message())
    run = Runner(chain_domain(Probe()), database_dsn, SETTINGS, services=[Instruments(provider)])
    await run.run(until_caught_up=True, handle_signals=False)
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        metric.name: {
            str((p.attributes or {}).get("consumer")): getattr(p, "value", None)
            for p in metric.data.data_points
        }
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    provider.shutdown()
    assert points["worker_messages_handled"]["orders:order"] == 3
    assert points["worker_consumer_position"]["orders:order"] == await store.category_head("order")
    assert points["worker_batch_handle_seconds_count"]["orders:order"] == 1
    assert points["worker_database_up"] == {"None": 1}


async def test_log_lines_of_a_handler_carry_trace_and_message(
    store: MessageStore, database_dsn: str, spans: InMemorySpanExporter
) -> None:
    """A line a handler logs carries the trace and span ids of its message's span, the
    message's global position, stream and correlation."""
    domain = Domain("test")
    domain.register_event(Ordered, category="order")

    @domain.event_handler(name="logger", stream_categories=["order"])
    class Logger:
        @handle(Ordered)
        async def ordered(self, event: Ordered, ctx: Context) -> None:
            structlog.get_logger("app").info("order seen", order=event.order)

    active = tracing.active()
    assert active is not None
    with active.tracer.start_as_current_span("request"):
        message = Ordered(order="o1").to_message({"correlationStreamName": "shop-7"})
        await store.write("order-o1", message)
    with json_logs() as lines:
        await Runner(domain, database_dsn, SETTINGS).run(until_caught_up=True, handle_signals=False)
    [seen] = [line for line in lines if line["event"] == "order seen"]
    handled = one(spans, "handle Ordered", "o1")
    context = handled.get_span_context()
    assert context is not None
    assert (seen["trace_id"], seen["span_id"]) == (
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
    )
    [stored] = await store.read_stream("order-o1")
    assert seen["global_position"] == stored.global_position
    assert (seen["stream_name"], seen["correlation"]) == ("order-o1", "shop-7")


class Placed(BaseEvent):
    order: str


class Remind(BaseEvent):
    order: str


async def test_protean_layout_carries_the_trace_in_its_headers(
    store: MessageStore, database_dsn: str, spans: InMemorySpanExporter
) -> None:
    """With Protean's conventions the trace context is written to, and read from,
    ``headers.traceparent`` (where Protean 0.18 keeps it): an event placed in a request, a
    handler writing a command, that command's handler: one trace."""
    domain = Domain("test", conventions="protean")
    domain.register_event(Placed, category="order")
    domain.register_event(Remind, category="remind:command")
    reminded: list[str] = []

    @domain.event_handler(name="placer")
    class Placer:
        @handle(Placed)
        async def placed(self, event: Placed, ctx: Context) -> None:
            await ctx.write(f"remind:command-{event.order}", Remind(order=event.order))

    @domain.event_handler(name="reminder")
    class Reminder:
        @handle(Remind)
        async def remind(self, event: Remind, ctx: Context) -> None:
            reminded.append(event.order)

    active = tracing.active()
    assert active is not None
    with active.tracer.start_as_current_span("request") as span:
        message = Placed(order="o1").to_message(stream_name="order-o1", position=0)
        await store.write("order-o1", message)
        trace_id = span.get_span_context().trace_id
    await run_chain(domain, database_dsn, hops=2)
    assert reminded == ["o1"]
    placed = one(spans, "handle Test.Placed.v1", "o1")
    remind = one(spans, "handle Test.Remind.v1", "o1")
    assert {trace_of(placed), trace_of(remind)} == {trace_id}
    assert parent_id(remind) == span_id(placed)
    [command] = await store.read_stream("remind:command-o1")
    metadata = command.metadata or {}
    assert "traceparent" not in metadata
    assert metadata["headers"]["traceparent"].split("-")[1:3] == [
        f"{trace_id:032x}",
        f"{span_id(placed):016x}",
    ]
