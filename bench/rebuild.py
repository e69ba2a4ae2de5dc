"""Rebuild benchmark: `worker rebuild order_summary`, blue/green and in place, as history grows.

    .venv/bin/python -m bench.rebuild [--sizes 100000,1000000] [--quick] [--repeat R]

For each size, on a fresh scratch database (``worker_bench_rebuild`` on the server that
``WORKER_EVENT_STORE__DATABASE_URI`` names, else the embedded PostgreSQL in
``.worker/bench-postgres``) it writes the events of ``bench.engine`` (N/10 orders x 10 events),
builds ``order_summary`` once with ``worker run --until-caught-up --only order_summary``, then
times ``worker rebuild order_summary`` and ``worker rebuild order_summary --in-place``, each as a
separate process (wall time and the process's peak RSS), and checks the read model after each.
Beside them, in the same run and on the same database, the raw set-based baseline of
``bench.engine`` (read + one set-based upsert per batch + position, one transaction per batch).

Figures are printed and written to ``bench/results/rebuild.json``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from bench.engine import (
    EVENTS_PER_STREAM,
    ROOT,
    TARGET_SUMMARY,
    check_summary,
    fresh_database,
    median_rate,
    raw_set_based,
    revision,
    server_dsn,
    server_info,
    write_events,
)
from worker import configure_logging
from worker.admin import quote_identifier

RESULTS = ROOT / "bench" / "results" / "rebuild.json"
DATABASE = "worker_bench_rebuild"
CONFIG = ROOT / "domain.toml"
PROJECTION = "order_summary"
DEFAULT_SIZES = (100_000, 1_000_000)
# Peak RSS at the largest size may exceed the smallest size's by this factor and still count
# as flat (the interpreter, the imported app and the pool are a fixed share of it).
TARGET_RSS_GROWTH = 1.25


@dataclass
class Options:
    sizes: list[int]
    repeat: int


@dataclass
class Child:
    """A finished ``worker`` process: wall time and peak resident set."""

    seconds: float
    peak_rss_mb: float


def worker_command() -> list[str]:
    """The ``worker`` entry point of this interpreter's environment (``python -m worker`` else)."""
    script = shutil.which("worker", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "worker"]


# Runs a command and reports its wall time and peak RSS. A child forked from this benchmark
# would inherit the benchmark's high-water RSS (the Linux kernel carries it over through fork and
# exec, and the writer holds every event in memory), so the command is started from this small
# separate interpreter instead, whose own footprint is what its child starts from.
LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
elapsed = time.perf_counter() - started
rss = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
with open(sys.argv[1], "w") as report:
    json.dump({"seconds": elapsed, "peak_rss_mb": rss}, report)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_worker(dsn: str, *args: str, check: bool = True) -> Child:
    """Run ``worker --config domain.toml ARGS`` on ``dsn``; its wall time and peak RSS."""
    env = {**os.environ, "WORKER_EVENT_STORE__DATABASE_URI": dsn}
    command = [*worker_command(), "--config", str(CONFIG), *args]
    with tempfile.TemporaryDirectory() as folder:
        figures = Path(folder) / "child.json"
        output = Path(folder) / "output.txt"
        with output.open("w") as sink:
            done = subprocess.run(
                [sys.executable, "-c", LAUNCHER, str(figures), *command],
                env=env,
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if check and done.returncode != 0:
            tail = output.read_text()[-4000:]
            raise RuntimeError(f"worker {' '.join(args)} exited {done.returncode}:\n{tail}")
        return Child(**json.loads(figures.read_text()))


def startup_seconds(dsn: str) -> float:
    """Wall time of a ``worker rebuild`` that loads the app, then stops at an unknown name.

    The interpreter, the imports and ``domain.toml``'s modules: the fixed cost in every timed
    run, before the first query.
    """
    runs = [run_worker(dsn, "rebuild", "no_such_projection", check=False) for _ in range(3)]
    return min(r.seconds for r in runs)


async def measure_size(dsn: str, size: int, options: Options) -> dict[str, Any]:
    """Write ``size`` events into the fresh database ``dsn``, then rebuild and baseline on them."""
    streams = size // EVENTS_PER_STREAM
    n = streams * EVENTS_PER_STREAM
    print(f"{n:,} events: writing ...", file=sys.stderr, flush=True)
    figures: dict[str, Any] = {"events": n, "streams": streams}
    figures["write"] = await write_events(dsn, streams)

    def timed(*args: str) -> Child:
        print(f"{n:,} events: worker {' '.join(args)} ...", file=sys.stderr, flush=True)
        return run_worker(dsn, *args)

    first = await anyio.to_thread.run_sync(
        partial(timed, "run", "--until-caught-up", "--only", PROJECTION)
    )
    await check_summary(dsn, streams, n)
    figures["initial_build"] = {**vars(first), "events_per_s": n / first.seconds}
    for key, args in (
        ("blue_green", ("rebuild", PROJECTION)),
        ("in_place", ("rebuild", PROJECTION, "--in-place")),
    ):
        runs = []
        for _ in range(options.repeat):
            child = await anyio.to_thread.run_sync(partial(timed, *args))
            await check_summary(dsn, streams, n)
            runs.append(child)
        seconds = statistics.median(c.seconds for c in runs)
        figures[key] = {
            "seconds": seconds,
            "events_per_s": n / seconds,
            "peak_rss_mb": max(c.peak_rss_mb for c in runs),
            "runs": [vars(c) for c in runs],
        }
    print(f"{n:,} events: raw set-based baseline ...", file=sys.stderr, flush=True)
    figures["raw_set_based"] = await median_rate(partial(raw_set_based, dsn), options.repeat, n)
    figures["startup_seconds"] = await anyio.to_thread.run_sync(startup_seconds, dsn)
    for key in ("blue_green", "in_place"):
        f = figures[key]
        f["ratio"] = f["events_per_s"] / figures["raw_set_based"]
        # The same without the process's fixed start-up cost (interpreter, imports, app load).
        f["events_per_s_after_startup"] = n / (f["seconds"] - figures["startup_seconds"])
        f["ratio_after_startup"] = f["events_per_s_after_startup"] / figures["raw_set_based"]
    return figures


async def main(options: Options) -> dict[str, Any]:
    configure_logging("warning")
    server = server_dsn()
    figures: dict[str, Any] = {"repeat": options.repeat, "sizes": {}}
    for size in options.sizes:
        dsn = await fresh_database(server, DATABASE)
        figures.setdefault("machine", await server_info(dsn))
        figures["sizes"][str(size)] = await measure_size(dsn, size, options)
    admin = await asyncpg.connect(server)
    try:  # a million events take a few hundred MB of disk: drop them
        await admin.execute(f"DROP DATABASE IF EXISTS {quote_identifier(DATABASE)} WITH (FORCE)")
    finally:
        await admin.close()
    return figures


def report(figures: dict[str, Any]) -> str:
    """The figures as a Markdown table, with the targets."""
    mark = {True: "met", False: "MISSED"}
    lines = [
        "| events | write | raw set-based | rebuild | events/s (wall) | of raw set-based "
        "| without start-up | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figures["sizes"].values():
        for key, label in (("blue_green", "blue/green"), ("in_place", "`--in-place`")):
            r = f[key]
            lines.append(
                f"| {f['events']:,} | {f['write']['write_events_per_s']:,.0f}/s "
                f"| {f['raw_set_based']:,.0f}/s | {label} "
                f"| {r['events_per_s']:,.0f} ({r['seconds']:.2f} s) | **{r['ratio']:.0%}** "
                f"| {r['events_per_s_after_startup']:,.0f} ({r['ratio_after_startup']:.0%}) "
                f"| **{r['peak_rss_mb']:.0f} MB** |"
            )
    sizes = list(figures["sizes"].values())
    ratios = [f[k]["ratio"] for f in sizes for k in ("blue_green", "in_place")]
    starts = ", ".join(f"{f['startup_seconds']:.2f} s" for f in sizes)
    lines += [
        "",
        f"process start-up (interpreter, imports, app load): {starts}",
        f"rebuild / raw set-based: {min(ratios):.0%}-{max(ratios):.0%} "
        f"(target >= {TARGET_SUMMARY:.0%}: {mark[min(ratios) >= TARGET_SUMMARY]})",
    ]
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        growth = max(
            large[k]["peak_rss_mb"] / small[k]["peak_rss_mb"] for k in ("blue_green", "in_place")
        )
        figures["rss_growth"] = growth
        lines.append(
            f"peak RSS at {large['events']:,} vs {small['events']:,} events: x{growth:.2f} "
            f"(target flat, <= x{TARGET_RSS_GROWTH}: {mark[growth <= TARGET_RSS_GROWTH]})"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rebuild", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in DEFAULT_SIZES),
        help="comma-separated event counts (10 per order); default %(default)s",
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (2,000 events)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args(argv)
    if args.quick:
        return Options(sizes=[2_000], repeat=1)
    try:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes takes comma-separated integers")
    if not sizes or min(sizes) < EVENTS_PER_STREAM:
        parser.error(f"every size must be at least {EVENTS_PER_STREAM}")
    return Options(sizes, args.repeat)


def run(argv: list[str] | None = None) -> None:
    options = parse(argv)
    figures = anyio.run(main, options)
    figures["machine"]["revision"] = revision()
    figures["machine"]["bench_peak_rss_mb"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    text = report(figures)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(text)
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    run()
