"""``worker events trace`` on a large store: with the causation indexes and without them.

On a scratch database (``worker_bench_trace`` on the server ``WORKER_EVENT_STORE__DATABASE_URI``
names) it writes N messages through MessageDB's ``write_message`` (server side, in statements
of 100,000) as causation trees of 100 messages each: in every block of 100, the first is a root
and message k (1..99) was caused by message (k - 1) // 3 of its block, across three categories
(Eventide's causation keys). Then, in alternating rounds (with the indexes, without them), it
times ``worker.store.causation.trace`` of a tree's root (the whole tree below it) and of a
message in the middle (two causes above it, its subtree below), the median of several traces
each; and the ``worker events trace`` command as a process (start-up included), with the
indexes. It also times building the index (the time writes wait during ``worker db install``).

    .venv/bin/python -m bench.trace [--messages 1000000] [--rounds 3] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio

from bench.engine import fresh_database, server_dsn
from tests.cli import EXAMPLE_APP
from worker import connect, create_pool, trace_causation

if TYPE_CHECKING:
    import asyncpg

DATABASE = "worker_bench_trace"
TREE = 100

_WRITE = """
SELECT count(message_store.write_message(
    gen_random_uuid()::text,
    (ARRAY['order', 'payment', 'shipment'])[1 + (g % 3)] || '-' || (g / 100),
    'Step',
    jsonb_build_object('n', g),
    CASE WHEN g % 100 = 0 THEN NULL ELSE jsonb_build_object(
        'causationMessageGlobalPosition', (g / 100) * 100 + (g % 100 - 1) / 3 + 1) END))
FROM generate_series($1::int, $2::int) AS g
"""

# The index that answers Eventide's causation keys (the one this store's messages use), as
# migration 0007 creates it.
_DROP = "DROP INDEX message_store.worker_causation_global_position"
_CREATE = """
CREATE INDEX worker_causation_global_position
    ON message_store.messages ((metadata->>'causationMessageGlobalPosition'))
    WHERE (metadata->>'causationMessageGlobalPosition') IS NOT NULL
"""


async def prepare(messages: int) -> str:
    """The scratch database, filled; global position g + 1 for message g."""
    dsn = await fresh_database(server_dsn(), DATABASE)
    conn = await connect(dsn)
    try:
        started = time.perf_counter()
        for start in range(0, messages, 100_000):
            await conn.execute(_WRITE, start, min(start + 99_999, messages - 1))
        await conn.execute("ANALYZE message_store.messages")
        head = await conn.fetchval("SELECT max(global_position) FROM message_store.messages")
        assert head == messages, f"expected global positions 1..{messages}, head is {head}"
        print(f"wrote {messages:,} messages in {time.perf_counter() - started:.0f} s")
    finally:
        await conn.close()
    return dsn


async def timed_traces(pool: asyncpg.Pool[Any], position: int, repeat: int) -> float:
    """The median seconds of ``repeat`` traces of the message at ``position``."""
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        tree = await trace_causation(pool, position)
        seconds.append(time.perf_counter() - started)
    assert tree.root.message.global_position <= position
    return statistics.median(seconds)


async def rounds(dsn: str, messages: int, count: int, repeat: int) -> None:
    middle_block = (messages // TREE // 2) * TREE
    targets = {"root": middle_block + 1, "middle": middle_block + 5}
    found: dict[tuple[str, bool], list[float]] = {}
    builds = []
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        for _ in range(count):
            for indexed in (True, False):
                for name, position in targets.items():
                    tries = repeat if indexed else max(3, repeat // 2)
                    seconds = await timed_traces(pool, position, tries)
                    found.setdefault((name, indexed), []).append(seconds)
                if indexed:
                    await pool.execute(_DROP)
                else:
                    started = time.perf_counter()
                    await pool.execute(_CREATE)
                    builds.append(time.perf_counter() - started)
    finally:
        await pool.close()
    for name in targets:
        with_index = statistics.median(found[(name, True)])
        without = statistics.median(found[(name, False)])
        print(
            f"trace of a tree's {name}: {with_index * 1000:.1f} ms with the index, "
            f"{without * 1000:.0f} ms without ({without / with_index:,.0f}x); per round with: "
            + ", ".join(f"{s * 1000:.1f}" for s in found[(name, True)])
            + " ms; without: "
            + ", ".join(f"{s * 1000:.0f}" for s in found[(name, False)])
            + " ms"
        )
    print(f"building the index on {messages:,} messages: {statistics.median(builds):.1f} s")


def command(dsn: str, position: int, repeat: int) -> None:
    """Time ``worker events trace`` as a process."""
    env = {**os.environ, "WORKER_EVENT_STORE__DATABASE_URI": dsn}
    args = [sys.executable, "-m", "worker", "--config", str(EXAMPLE_APP), "events", "trace"]
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([*args, str(position), "--json"], env=env, capture_output=True, check=True)
        seconds.append(time.perf_counter() - started)
    print(
        f"`worker events trace {position} --json` as a process: "
        f"{statistics.median(seconds):.2f} s (median of {repeat}, start-up included)"
    )


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()
    dsn = anyio.run(prepare, options.messages)
    anyio.run(rounds, dsn, options.messages, options.rounds, options.repeat)
    command(dsn, (options.messages // TREE // 2) * TREE + 5, 5)


if __name__ == "__main__":
    run()
