"""What tracing costs the engine: the no-op catch-up of ``bench.engine`` with telemetry off and
on, alternately, in one process.

Writes the engine benchmark's 100,000 Order events into a scratch database of its own
(``worker_bench_telemetry``) and gives every message a ``traceparent`` of its own (a trace per
message, as when every event comes from a different request: the batch span links to up to 128
of them). Then, ``--pairs`` times: a catch-up with telemetry off, and one with tracing on
through OpenTelemetry's SDK, every span handed to a ``SimpleSpanProcessor`` whose exporter drops
it (the spans are made, ended and exported, nothing is sent). Reports the median rates and the
median and range of the per-pair ratios on/off. The scratch database is dropped at the end.

    .venv/bin/python -m bench.telemetry [--pairs P] [--events N]
"""

from __future__ import annotations

import argparse
import statistics
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from bench.engine import (
    EVENTS_PER_STREAM,
    engine_catch_up,
    fresh_database,
    noop_domain,
    server_dsn,
    write_events,
)
from worker import configure_logging, load_settings, start_tracing, stop_tracing

if TYPE_CHECKING:
    from collections.abc import Sequence

DATABASE = "worker_bench_telemetry"

# A W3C traceparent per message, derived from its id: a trace (and a parent span) of its own.
TRACEPARENTS = """
UPDATE message_store.messages SET metadata = metadata || jsonb_build_object(
    'traceparent',
    '00-' || md5(id::text) || '-' || substr(md5(id::text || 'span'), 1, 16) || '-01')
"""


class Dropping(SpanExporter):
    """An exporter that drops every span (the cost of making them, none of sending them)."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def catch_up(dsn: str, traced: bool) -> float:
    """One no-op catch-up from position 0; events per second."""
    settings = load_settings().worker
    provider = None
    if traced:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Dropping()))
        start_tracing(provider)
    try:
        count, seconds = await engine_catch_up(dsn, settings, noop_domain(), "noop")
    finally:
        stop_tracing()
        if provider is not None:
            provider.shutdown()
    return count / seconds


async def main(pairs: int, events: int) -> dict[str, Any]:
    configure_logging("warning")
    server = server_dsn()
    dsn = await fresh_database(server, DATABASE)
    try:
        await write_events(dsn, events // EVENTS_PER_STREAM)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(TRACEPARENTS)
            await conn.execute("VACUUM ANALYZE message_store.messages")
        finally:
            await conn.close()
        await catch_up(dsn, False)  # warm-up
        off, on = [], []
        for _ in range(pairs):
            off.append(await catch_up(dsn, False))
            on.append(await catch_up(dsn, True))
    finally:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        finally:
            await admin.close()
    ratios = [b / a for a, b in zip(off, on, strict=True)]
    return {"off": off, "on": on, "ratios": ratios}


def report(figures: dict[str, Any]) -> str:
    ratios = figures["ratios"]
    return "\n".join(
        [
            f"telemetry off: {statistics.median(figures['off']):,.0f} events/s (median)",
            f"telemetry on:  {statistics.median(figures['on']):,.0f} events/s (median)",
            f"on/off: {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}), "
            f"{len(ratios)} pairs",
        ]
    )


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--events", type=int, default=100_000)
    options = parser.parse_args()
    print(report(anyio.run(main, options.pairs, options.events)))


if __name__ == "__main__":
    run()
