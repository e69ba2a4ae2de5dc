"""Two source trees, alternately: the engine's no-op catch-up, plain and upcast, per tree.

Writes the engine benchmark's 100,000 Order events once into a scratch database of its own
(``worker_bench_trees``), then runs one process per tree in turn (A B, B A, A B, ...,
``--pairs`` pairs), each with that tree's ``worker`` and ``bench`` (its directory first on the
path): the no-op projector of ``bench.engine`` over version-1 classes, and that of
``bench.upcast`` over the same classes at version 2 (every message upcast), ``--rounds``
catch-ups each. Reports each figure's median per tree and the median and range of the per-pair
ratios A/B. The scratch database is dropped at the end.

    git archive <commit> | tar -x -C /tmp/base
    .venv/bin/python -m bench.trees . /tmp/base [--pairs P] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import anyio
import asyncpg

from bench.engine import EVENTS_PER_STREAM, fresh_database, server_dsn, write_events
from worker import configure_logging

DATABASE = "worker_bench_trees"
FIGURES = ("noop", "upcast")

# One tree's process: its own ``bench`` and ``worker``, the catch-ups on the given database.
CHILD = """
import json, sys
import anyio
import asyncpg
from bench.engine import engine_catch_up, noop_domain
from bench.upcast import upcast_domain
from worker.ops.log import configure_logging
from worker.ops.settings import load_settings

async def main(dsn, rounds):
    configure_logging("warning")
    settings = load_settings().worker
    domains = {"noop": noop_domain(), "upcast": upcast_domain()}
    rates = {name: [] for name in domains}
    for _ in range(rounds):
        for name, domain in domains.items():
            count, seconds = await engine_catch_up(dsn, settings, domain, "noop")
            rates[name].append(count / seconds)
    print(json.dumps(rates))

anyio.run(main, sys.argv[1], int(sys.argv[2]))
"""


def run_tree(tree: Path, dsn: str, rounds: int) -> dict[str, float]:
    """One process of ``tree``: the median rate of each figure."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, dsn, str(rounds)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rates = json.loads(done.stdout.splitlines()[-1])
    return {name: statistics.median(rates[name]) for name in FIGURES}


async def drop() -> None:
    admin = await asyncpg.connect(server_dsn())
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    finally:
        await admin.close()


async def prepare(events: int) -> str:
    configure_logging("warning")
    dsn = await fresh_database(server_dsn(), DATABASE)
    await write_events(dsn, events // EVENTS_PER_STREAM)
    return dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="tree A (the candidate)")
    parser.add_argument("b", type=Path, help="tree B (the baseline)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="catch-ups per figure and process")
    options = parser.parse_args()
    dsn = anyio.run(prepare, options.events)
    runs: list[tuple[dict[str, float], dict[str, float]]] = []
    for pair in range(options.pairs):
        if pair % 2:  # A B, then B A: a drift of the machine's speed weighs on both alike
            b = run_tree(options.b.resolve(), dsn, options.rounds)
            a = run_tree(options.a.resolve(), dsn, options.rounds)
        else:
            a = run_tree(options.a.resolve(), dsn, options.rounds)
            b = run_tree(options.b.resolve(), dsn, options.rounds)
        runs.append((a, b))
        print(f"pair {len(runs)}: A {a}  B {b}  load {os.getloadavg()[0]:.2f}", flush=True)
    anyio.run(drop)
    for name in FIGURES:
        ratios = [a[name] / b[name] for a, b in runs]
        print(
            f"{name}: A {statistics.median(a[name] for a, _ in runs):,.0f} events/s, "
            f"B {statistics.median(b[name] for _, b in runs):,.0f} events/s; A/B "
            f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}, "
            f"{len(runs)} pairs)"
        )


if __name__ == "__main__":
    main()
