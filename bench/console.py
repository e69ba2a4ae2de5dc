"""Console benchmark: what the web console costs the worker, and what its overview costs the
database.

    .venv/bin/python -m bench.console [--events N] [--repeat R] [--messages M] [--skip-engine]

1. **The engine beside a console.** On ``bench.engine``'s scratch data (``N`` Order events,
   written the same way, in ``worker_bench_console``), the engine's no-op catch-up
   (``bench.engine.engine_catch_up``) runs alternately without and with a ``worker console``
   process on the same database serving one open Server-Sent Events stream of the overview to a
   reader process (``--repeat`` pairs, ABAB): the ratio of each pair and their median.
2. **The overview's queries on a large store.** A throwaway database (``worker_bench_console_big``)
   is filled with ``M`` messages through ``message_store.write_message`` (one server-side
   statement; 10,000 ``order`` streams, and a small ``invoice`` category written last), with
   consumers of both categories at the start, half way and at the head. Then the medians of 7
   runs of what one look of the overview reads: ``consumer_status`` (``worker status``), a
   ``watch`` frame with rates (``worker status --watch``) and ``projection_status``.

Both databases are dropped and created again on every run; figures are printed and written to
``bench/results/console.json``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from bench.engine import (
    EVENTS_PER_STREAM,
    ROOT,
    OrderShipped,
    engine_catch_up,
    fresh_database,
    noop_domain,
    revision,
    server_dsn,
    server_info,
    write_events,
)
from worker import (
    BaseEvent,
    Domain,
    configure_logging,
    connect,
    create_pool,
    load_settings,
    on,
)
from worker.admin import consumer_status, projection_status, watch_status

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from worker import Context

RESULTS = ROOT / "bench" / "results" / "console.json"
ENGINE_DATABASE = "worker_bench_console"
BIG_DATABASE = "worker_bench_console_big"
TIMED_RUNS = 7
# The console process's CPU seconds per second of each run beside it.
CONSOLE_CPU: list[float] = []

# The console process's application: bench.engine's no-op projector, as the worker runs it.
APP_MODULE = """
from bench.engine import noop_domain

domain = noop_domain()
"""
APP_CONFIG = """
[domain]
name = "bench"
modules = ["bench_console_app"]
instance = "bench_console_app:domain"

[worker]
log_format = "json"
"""

# Reads the overview's event stream until killed, as an open browser tab does.
READER = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/events/overview") as stream:
    for line in stream:
        if line.startswith(b"event:"):
            print("event", flush=True)
"""


@dataclass(frozen=True)
class Options:
    events: int
    repeat: int
    messages: int
    engine: bool


# -- 1. the engine beside a console ----------------------------------------------------------


class ConsoleProcess:
    """``worker console`` on ``dsn`` and a reader holding its overview stream open."""

    def __init__(self, dsn: str, folder: Path) -> None:
        (folder / "bench_console_app.py").write_text(APP_MODULE)
        (folder / "domain.toml").write_text(APP_CONFIG)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WORKER_")},
            "WORKER_EVENT_STORE__DATABASE_URI": dsn,
            "PYTHONPATH": str(ROOT),
        }
        command = [sys.executable, "-m", "worker", "--config", str(folder / "domain.toml")]
        self.log = (folder / "console.log").open("w+")
        self.console = subprocess.Popen(
            [*command, "console", "--port", "0"], stdout=self.log, stderr=self.log, env=env
        )
        url = self._url()
        self.reader = subprocess.Popen(
            [sys.executable, "-c", READER, url], stdout=subprocess.PIPE, text=True
        )
        assert self.reader.stdout is not None
        for _ in range(2):  # two events: the stream is open and the console past its start
            self.reader.stdout.readline()

    def _url(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.log.seek(0)
            for line in self.log:
                if '"console listening"' in line:
                    return str(json.loads(line)["url"]).rstrip("/")
            assert self.console.poll() is None, "the console exited"
            time.sleep(0.05)
        raise AssertionError("the console did not start within 30 s")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the console process has used so far."""
        fields = Path(f"/proc/{self.console.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        for process in (self.reader, self.console):
            process.terminate()
            process.wait(10)
        self.log.close()


async def beside_console(
    run: Callable[[], Awaitable[tuple[int, float]]], dsn: str, folder: Path
) -> tuple[int, float]:
    """``run`` while a console serves an open overview stream (started before, stopped after)."""
    console = await anyio.to_thread.run_sync(ConsoleProcess, dsn, folder)
    try:
        before = console.cpu_seconds()
        count, seconds = await run()
        CONSOLE_CPU.append((console.cpu_seconds() - before) / seconds)
        return count, seconds
    finally:
        await anyio.to_thread.run_sync(console.stop)


async def engine_cost(options: Options) -> dict[str, Any]:
    dsn = await fresh_database(server_dsn(), ENGINE_DATABASE)
    streams = options.events // EVENTS_PER_STREAM
    await write_events(dsn, streams)
    settings = load_settings().worker
    noop = noop_domain()
    alone = partial(engine_catch_up, dsn, settings, noop, "noop")
    without, beside, ratios = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(options.repeat):
            for run, found in (
                (alone, without),
                (partial(beside_console, alone, dsn, Path(folder)), beside),
            ):
                count, seconds = await run()
                assert count == streams * EVENTS_PER_STREAM, f"handled {count} events"
                found.append(count / seconds)
            ratios.append(beside[-1] / without[-1])
    return {
        "events": streams * EVENTS_PER_STREAM,
        "without": statistics.median(without),
        "beside": statistics.median(beside),
        "ratios": ratios,
        "ratio": statistics.median(ratios),
        "console_cpu_share": statistics.median(CONSOLE_CPU),
        "machine": await server_info(dsn),
    }


# -- 2. the overview's queries on a large store ------------------------------------------------

FILL = """
SELECT count(message_store.write_message(
    gen_random_uuid()::text, $1 || '-' || (i % $2), $4,
    jsonb_build_object('n', i), NULL, NULL))
FROM generate_series(1, $3) AS i
"""


class Invoiced(BaseEvent):
    """The small category's event."""

    n: int


def overview_domain() -> Domain:
    """Two consumers of ``order`` and one of ``invoice``, as the worker would have them."""
    bench = Domain("bench")
    bench.register_event(Invoiced, category="invoice")
    for name, handled in (("orders_a", OrderShipped), ("orders_b", OrderShipped)):

        @bench.projector(name=name)
        class Orders:
            @on(handled)
            async def any_event(self, event: Any, ctx: Context) -> None:
                pass

    @bench.projector(name="invoices")
    class Invoices:
        @on(Invoiced)
        async def invoiced(self, event: Invoiced, ctx: Context) -> None:
            pass

    return bench


async def fill(dsn: str, messages: int) -> dict[str, Any]:
    """``messages`` messages: most in ``order``, the last 1% in ``invoice``; positions of the
    consumers at the start, half way and the head."""
    invoices = max(messages // 100, 1)
    conn = await connect(dsn)
    try:
        started = time.perf_counter()
        await conn.fetchval(FILL, "order", 10_000, messages - invoices, "OrderShipped")
        await conn.fetchval(FILL, "invoice", 100, invoices, "Invoiced")
        seconds = time.perf_counter() - started
        await conn.execute("ANALYZE message_store.messages")
        positions = {
            "orders_a:order": 0,
            "orders_b:order": (messages - invoices) // 2,
            "invoices:invoice": messages,
        }
        for consumer, position in positions.items():
            await conn.execute(
                "INSERT INTO worker.positions (consumer, position) VALUES ($1, $2)",
                consumer,
                position,
            )
    finally:
        await conn.close()
    return {"messages": messages, "fill_seconds": seconds, "positions": positions}


async def timed(work: Callable[[], Awaitable[Any]]) -> float:
    """The median milliseconds of ``TIMED_RUNS`` runs of ``work`` (after one not counted)."""
    await work()
    found = []
    for _ in range(TIMED_RUNS):
        started = time.perf_counter()
        await work()
        found.append((time.perf_counter() - started) * 1000)
    return statistics.median(found)


async def overview_cost(options: Options) -> dict[str, Any]:
    dsn = await fresh_database(server_dsn(), BIG_DATABASE)
    figures = await fill(dsn, options.messages)
    domain = overview_domain()
    pool = await create_pool(dsn, min_size=1, max_size=4)
    try:

        async def frame() -> None:
            looks = watch_status(pool, domain, interval=0.001, count=2)
            async for _ in looks:
                pass

        figures["consumer_status_ms"] = await timed(partial(consumer_status, pool, domain))
        figures["watch_two_frames_ms"] = await timed(frame)
        figures["projection_status_ms"] = await timed(partial(projection_status, pool, domain))
    finally:
        await pool.close()
    return figures


# -- the report -------------------------------------------------------------------------------


def report(figures: dict[str, Any]) -> Iterator[str]:
    engine = figures.get("engine")
    if engine:
        spread = f"{min(engine['ratios']):.0%}-{max(engine['ratios']):.0%}"
        yield f"engine no-op catch-up, {engine['events']:,} events:"
        yield f"  without a console        {engine['without']:,.0f} events/s"
        yield f"  beside a console + SSE   {engine['beside']:,.0f} events/s"
        yield f"  ratio (median of pairs)  {engine['ratio']:.0%} ({spread})"
        yield f"  console process CPU      {engine['console_cpu_share']:.1%} of one core"
    big = figures["overview"]
    yield f"overview on {big['messages']:,} messages (filled in {big['fill_seconds']:.0f} s):"
    yield f"  consumer_status          {big['consumer_status_ms']:.1f} ms"
    yield f"  watch, two frames        {big['watch_two_frames_ms']:.1f} ms"
    yield f"  projection_status        {big['projection_status_ms']:.1f} ms"


async def main(options: Options) -> dict[str, Any]:
    configure_logging("warning")
    figures: dict[str, Any] = {}
    if options.engine:
        figures["engine"] = await engine_cost(options)
    figures["overview"] = await overview_cost(options)
    return figures


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="engine: events to write")
    parser.add_argument("--repeat", type=int, default=5, help="engine: pairs, run alternately")
    parser.add_argument("--messages", type=int, default=1_000_000, help="overview: messages")
    parser.add_argument("--skip-engine", action="store_true", help="only the overview's queries")
    args = parser.parse_args(argv)
    return Options(args.events, args.repeat, args.messages, not args.skip_engine)


def run(argv: list[str] | None = None) -> None:
    figures = anyio.run(main, parse(argv))
    figures["revision"] = revision()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print("\n".join(report(figures)))
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    run()
