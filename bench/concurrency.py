"""Stream-wise concurrency: an event handler that waits 5 ms on simulated I/O per event.

On a fresh scratch database (``worker_bench_concurrency``) it writes ``--events`` events over
``--streams`` streams (round robin: every stream's first event, then every stream's second, ...,
as busy streams interleave), then measures an event handler whose every call awaits
``--io-ms`` of simulated I/O (``anyio.sleep``):

- one process at ``concurrency`` 10 and 100 (partitioned by stream, the default);
- a consumer group of 2 (``group_size=2``) in one process, and one member per process (two
  processes started together), both at ``concurrency`` 1 and at 100;

each run alternating with the sequential one (``concurrency`` 1, one process), ``--pairs``
times: the median rates and the median and range of the per-pair speed-ups.

Each run starts from position 0 and stops once caught up or after ``--seconds``; its rate is
the events handled over the time from the first to the last handler call. At the end of every
run each stream's events must have been handled in stream order, each once (the handled prefix
of every stream is its positions 0, 1, 2, ...).

    .venv/bin/python -m bench.concurrency [--events N] [--streams S] [--io-ms MS] [--seconds T]
                                          [--pairs P]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from bench.engine import fresh_database, server_dsn
from worker import (
    BaseEvent,
    Domain,
    Runner,
    configure_logging,
    connect,
    handle,
    load_settings,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from worker import Context

DATABASE = "worker_bench_concurrency"
CATEGORY = "parcel"
NAME = "notifier"
WRITE = "SELECT message_store.write_message($1, $2, $3, $4, $5, $6)"


class Scanned(BaseEvent):
    parcel_id: str
    scan: int


@dataclass
class Handled:
    """What a run's handler saw: each stream's positions in the order handled, and when."""

    streams: dict[str, list[int]] = field(default_factory=dict)
    count: int = 0
    first: float = 0.0
    last: float = 0.0

    def rate(self) -> float:
        return (self.count - 1) / (self.last - self.first) if self.count > 1 else 0.0

    def in_order(self) -> bool:
        """Every stream's handled events are its positions 0, 1, 2, ... in that order."""
        return all(seen == list(range(len(seen))) for seen in self.streams.values())


def io_domain(handled: Handled, io_seconds: float, concurrency: int, group_size: int) -> Domain:
    bench = Domain("bench-io")
    bench.register_event(Scanned, category=CATEGORY)

    @bench.event_handler(name=NAME, concurrency=concurrency, group_size=group_size)
    class Notifier:
        @handle(Scanned)
        async def scanned(self, event: Scanned, ctx: Context) -> None:
            await anyio.sleep(io_seconds)  # the call to the outside world
            now = time.perf_counter()
            if not handled.count:
                handled.first = now
            handled.count += 1
            handled.last = now
            message = ctx.message
            handled.streams.setdefault(message.stream_name, []).append(message.position)

    return bench


async def write_events(dsn: str, streams: int, events: int) -> None:
    conn = await connect(dsn)
    try:
        rows = [
            (
                f"00000000-0000-4000-8000-{n * streams + s:012d}",
                f"{CATEGORY}-{s:05d}",
                "Scanned",
                {"parcel_id": f"{s:05d}", "scan": n},
                None,
                None,
            )
            for n in range(events // streams)
            for s in range(streams)
        ]
        for start in range(0, len(rows), 2000):
            async with conn.transaction():
                await conn.executemany(WRITE, rows[start : start + 2000])
    finally:
        await conn.close()


async def reset(dsn: str) -> None:
    """Every consumer of the handler (group members too) back to position 0."""
    conn = await connect(dsn)
    try:
        await conn.execute("DELETE FROM worker.positions WHERE consumer LIKE $1", f"{NAME}:%")
    finally:
        await conn.close()


async def run_once(
    dsn: str,
    *,
    io_seconds: float,
    concurrency: int,
    group_size: int = 1,
    only: list[str] | None = None,
    seconds: float,
    from_zero: bool = True,
) -> Handled:
    """One run from position 0, until caught up or ``seconds`` have passed."""
    handled = Handled()
    domain = io_domain(handled, io_seconds, concurrency, group_size)
    if from_zero:
        await reset(dsn)
    runner = Runner(domain, dsn, load_settings().worker, only=only)
    done = anyio.Event()

    async def go() -> None:
        await runner.run(until_caught_up=True, handle_signals=False)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(go)
        with anyio.move_on_after(seconds):
            await done.wait()
        runner.request_stop()
    return handled


def member_main(dsn: str, member: int, options: Options, concurrency: int) -> None:
    """A member process of the consumer group: prints what it handled as JSON."""
    configure_logging("warning")
    handled = anyio.run(
        partial(
            run_once,
            dsn,
            io_seconds=options.io_ms / 1000,
            concurrency=concurrency,
            group_size=2,
            only=[f"{NAME}:{CATEGORY}@{member}/2"],
            seconds=options.seconds,
            from_zero=False,
        )
    )
    print(
        json.dumps(
            {
                "count": handled.count,
                "first": handled.first,
                "last": handled.last,
                "in_order": handled.in_order(),
            }
        )
    )


async def group_of_two(dsn: str, options: Options, concurrency: int) -> tuple[float, bool]:
    """Two member processes started together; their combined rate over the common span."""
    await reset(dsn)
    command = [sys.executable, "-m", "bench.concurrency", "--dsn", dsn]
    common = ["--io-ms", str(options.io_ms), "--seconds", str(options.seconds)]
    outputs: list[dict[str, Any]] = []

    async def member(m: int) -> None:
        args = [*command, *common, "--member", str(m), "--concurrency", str(concurrency)]
        done = await anyio.run_process(args, env=dict(os.environ))
        outputs.append(json.loads(done.stdout.decode().strip().splitlines()[-1]))

    async with anyio.create_task_group() as tg:
        for m in (0, 1):
            tg.start_soon(member, m)
    count = sum(o["count"] for o in outputs)
    # time.perf_counter is the same clock in both processes (CLOCK_MONOTONIC).
    span = max(o["last"] for o in outputs) - min(o["first"] for o in outputs)
    return count / span, all(o["in_order"] for o in outputs)


@dataclass
class Options:
    events: int
    streams: int
    io_ms: float
    seconds: float
    pairs: int = 3


async def main(options: Options) -> None:
    configure_logging("warning")
    dsn = await fresh_database(server_dsn(), DATABASE)
    await write_events(dsn, options.streams, options.events)
    n = options.events // options.streams * options.streams
    io = options.io_ms / 1000
    print(
        f"{n:,} events in {options.streams:,} streams; handler awaits {options.io_ms:g} ms per "
        f"event; runs stop when caught up or after {options.seconds:g} s; each run alternates "
        f"with the sequential one (concurrency 1, one process), {options.pairs} pairs"
    )
    print()
    print("| run | events/s (median) | sequential (median) | speed-up: median (range) | order |")
    print("|---|---:|---:|---|---|")

    async def one_process(concurrency: int, group_size: int = 1) -> tuple[float, bool]:
        handled = await run_once(
            dsn,
            io_seconds=io,
            concurrency=concurrency,
            group_size=group_size,
            seconds=options.seconds,
        )
        return handled.rate(), handled.in_order()

    candidates: list[tuple[str, Callable[[], Awaitable[tuple[float, bool]]]]] = [
        ("one process, concurrency 10", partial(one_process, 10)),
        ("one process, concurrency 100", partial(one_process, 100)),
        ("group of 2 in one process, concurrency 1", partial(one_process, 1, 2)),
        ("group of 2 in two processes, concurrency 1", partial(group_of_two, dsn, options, 1)),
        ("group of 2 in one process, concurrency 100", partial(one_process, 100, 2)),
        ("group of 2 in two processes, concurrency 100", partial(group_of_two, dsn, options, 100)),
    ]
    for label, candidate in candidates:
        rates, bases, ordered = [], [], True
        for _ in range(options.pairs):  # ABAB...: the sequential run, then the candidate
            base, base_ordered = await one_process(1)
            rate, candidate_ordered = await candidate()
            bases.append(base)
            rates.append(rate)
            ordered = ordered and base_ordered and candidate_ordered
        ratios = [r / b for r, b in zip(rates, bases, strict=True)]
        print(
            f"| {label} | {statistics.median(rates):,.0f} | {statistics.median(bases):,.0f} | "
            f"{statistics.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f}x) | "
            f"{'kept' if ordered else 'BROKEN'} |"
        )


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--io-ms", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--member", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    options = Options(args.events, args.streams, args.io_ms, args.seconds, args.pairs)
    if args.member is not None:
        member_main(args.dsn, args.member, options, args.concurrency)
        return
    anyio.run(main, options)


if __name__ == "__main__":
    run()
