"""Consumer groups: the server's CPU per event of a member, and a group's throughput.

``server``: on a scratch database (``worker_bench_groups``) it writes ``--events`` events over
10,000 streams of one category, then reads the whole category as a single consumer and as every
member of groups of 2, 4 and 8 (one connection per member, the members reading at once, 1,000-row
batches), each way:

- **before**: MessageDB's ``get_category_messages(category, position, 1000, NULL, member,
  size)`` (what a member read until now: the category scanned, ``hash_64`` on every row);
- **after**: ``MessageStore.read_category`` (a member's read through its size's index, which
  ``worker db install`` builds; here ``create_group_index``).

The server's cost is the CPU time (user + system) its backends spent, from ``/proc/<pid>/stat``
of each connection's backend (``pg_backend_pid()``), summed over the members and divided by the
events: so the benchmark must run on the database's machine. Rounds alternate the two ways
(ABAB), ``--rounds`` times; medians.

``throughput``: ``worker run`` processes of ``bench/groups_app`` (a handler that spins
``--us`` microseconds of Python per event, or waits that long), one process per member
(``max_group_slots = 1``), against one process with a single consumer, alternating, ``--rounds``
times. A run's rate is the events over the time from the first event any process handled to
the last. Each figure is printed with the load average at the time.

    .venv/bin/python -m bench.groups server [--events N] [--rounds R]
    .venv/bin/python -m bench.groups throughput [--events N] [--rounds R] [--us US]
                                                [--handler cpu|io] [--sizes 2 4 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from bench.engine import fresh_database, server_dsn
from worker import MessageStore, connect
from worker.admin import create_group_index

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import asyncpg

DATABASE = "worker_bench_groups"
CATEGORY = "work"
STREAMS = 10_000
SIZES = (2, 4, 8)
APP = Path(__file__).parent / "groups_app"
TICKS = os.sysconf("SC_CLK_TCK")

WRITE = """
SELECT count(message_store.write_message(
    gen_random_uuid()::text, 'work-' || (g % $3), 'Arrived',
    jsonb_build_object('item', g), '{"schemaVersion": 1}'::jsonb, NULL))
FROM generate_series($1::bigint, $2::bigint) g
"""

BEFORE = "SELECT * FROM message_store.get_category_messages($1, $2, $3, NULL, $4, $5)"


def load() -> str:
    """The load averages (1, 5, 15 minutes) as the kernel reports them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def backend_seconds(pid: int) -> float:
    """CPU seconds (user + system) the server process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def write_events(conn: asyncpg.Connection[Any], events: int) -> None:
    for start in range(0, events, 10_000):
        end = min(start + 10_000, events) - 1
        await conn.fetchval(WRITE, start, end, STREAMS)


async def read_share(
    conn: asyncpg.Connection[Any], way: str, member: int | None, size: int | None, position: int = 1
) -> int:
    """Read a member's share (or the category) from ``position`` to its end; how many."""
    store, count = MessageStore(conn), 0
    while True:
        if way == "before":
            rows = await conn.fetch(BEFORE, CATEGORY, position, 1000, member, size)
        else:
            rows = await store.read_category(
                CATEGORY, position, 1000, consumer_group_member=member, consumer_group_size=size
            )
        if not rows:
            return count
        count += len(rows)
        position = rows[-1]["global_position"] + 1


async def server_cost(dsn: str, way: str, size: int) -> tuple[float, int]:
    """Microseconds of server CPU per event for a group of ``size`` (1: a single consumer)."""
    conns = [await connect(dsn) for _ in range(size)]
    try:
        pids = [await conn.fetchval("SELECT pg_backend_pid()") for conn in conns]
        for i, conn in enumerate(conns):  # statements prepared, catalogs cached: not counted
            grouped = (i, size) if size > 1 else (None, None)
            await read_share(conn, way, *grouped, position=10**12)
        before = sum(backend_seconds(pid) for pid in pids)
        counts: list[int] = []

        async def member(i: int) -> None:
            grouped = (i, size) if size > 1 else (None, None)
            counts.append(await read_share(conns[i], way, *grouped))

        async with anyio.create_task_group() as tg:
            for i in range(size):
                tg.start_soon(member, i)
        spent = sum(backend_seconds(pid) for pid in pids) - before
    finally:
        for conn in conns:
            await conn.close()
    return spent / sum(counts) * 1e6, sum(counts)


async def server(events: int, rounds: int) -> None:
    dsn = await fresh_database(server_dsn(), DATABASE)
    conn = await connect(dsn)
    try:
        await write_events(conn, events)
        for size in SIZES:
            await create_group_index(conn, size)
    finally:
        await conn.close()
    figures: dict[tuple[str, int], list[float]] = {}
    for n in range(rounds):
        order = ("before", "after") if n % 2 == 0 else ("after", "before")
        for way in order:
            for size in (1, *SIZES):
                cost, read = await server_cost(dsn, way, size)
                assert read == events, f"{way} {size}: read {read} of {events}"
                figures.setdefault((way, size), []).append(cost)
        print(f"round {n + 1}/{rounds} done, load {load()}", file=sys.stderr)
    print(f"server CPU per event, {events} events, medians of {rounds} rounds, load {load()}")
    print("| group | before µs/event | ratio | after µs/event | ratio |")
    print("|---|---|---|---|---|")
    for size in (1, *SIZES):
        row = [f"{size}"]
        for way in ("before", "after"):
            cost = statistics.median(figures[(way, size)])
            single = statistics.median(figures[(way, 1)])
            row += [f"{cost:.2f}", f"{cost / single:.2f}x"]
        print("| " + " | ".join(row) + " |")


# -- throughput ---------------------------------------------------------------------------


async def targets(conn: asyncpg.Connection[Any], size: int) -> dict[str, int]:
    """The last message of each member's share (of the category, for 1), by consumer name."""
    rows = await conn.fetch(
        """
        SELECT CASE WHEN $1 = 1 THEN 'work:work'
                    ELSE format('work:work@%s/%s', (@ worker.member_hash(stream_name)) % $1, $1)
               END, max(global_position)
        FROM message_store.messages GROUP BY 1
        """,
        size,
    )
    return {row[0]: row[1] for row in rows}


async def caught_up(conn: asyncpg.Connection[Any], last: dict[str, int]) -> bool:
    """Whether every member has handled the last message of its share (``targets``)."""
    rows = await conn.fetch(
        "SELECT consumer, position FROM worker.positions WHERE consumer = ANY($1::text[])",
        list(last),
    )
    return len(rows) == len(last) and all(row[1] >= last[row[0]] for row in rows)


async def held(conn: asyncpg.Connection[Any], size: int) -> bool:
    """Whether every member (or the single consumer) is held by a running process."""
    held: int = await conn.fetchval(
        "SELECT count(*) FROM worker.leases WHERE consumer LIKE 'work:work%' AND expires_at > now()"
    )
    return held == size


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str, within: float = 600
) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await anyio.sleep(0.1)


async def one_run(dsn: str, size: int, events: int, handler: str, us: int) -> float:
    """Events per second of a group of ``size`` processes (1: one process, one consumer): the
    processes start on an empty category; once each holds its member, the events are written
    in one transaction, and the run ends when every member has handled its share."""
    conn = await connect(dsn)
    try:
        await conn.execute(
            "DELETE FROM message_store.messages; DELETE FROM worker.positions; "
            "DELETE FROM worker.leases; DELETE FROM worker.groups"
        )
        with tempfile.TemporaryDirectory() as folder:
            times = Path(folder) / "times"
            env = {
                **os.environ,
                "WORKER_EVENT_STORE__DATABASE_URI": dsn,
                "WORKER_WORKER__MAX_GROUP_SLOTS": "1",
                "GROUPS_BENCH_SIZE": str(size),
                "GROUPS_BENCH_HANDLER": handler,
                "GROUPS_BENCH_US": str(us),
                "GROUPS_BENCH_TIMES": str(times),
            }
            command = [sys.executable, "-m", "worker", "--config", str(APP / "domain.toml")]
            processes = [
                await anyio.open_process([*command, "run"], env=env, stdout=None, stderr=None)
                for _ in range(size)
            ]
            try:
                await wait_for(partial(held, conn, size), "every member held")
                async with conn.transaction():
                    await write_events(conn, events)
                last = await targets(conn, size)
                await wait_for(partial(caught_up, conn, last), "every event handled")
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    await process.wait()
            stamps = [tuple(map(float, line.split())) for line in times.read_text().splitlines()]
    finally:
        await conn.close()
    assert len(stamps) == size, f"{len(stamps)} of {size} processes reported their times"
    return events / (max(s[1] for s in stamps) - min(s[0] for s in stamps))


async def throughput(events: int, rounds: int, handler: str, us: int, sizes: list[int]) -> None:
    dsn = await fresh_database(server_dsn(), DATABASE)
    conn = await connect(dsn)
    try:
        await write_events(conn, events)
        for size in sizes:
            await create_group_index(conn, size)
    finally:
        await conn.close()
    print(f"{handler} handler, {us} µs per event, {events} events, load {load()}")
    print("| group | one consumer events/s | group events/s | speed-up (median, range) | load |")
    print("|---|---|---|---|---|")
    for size in sizes:
        singles, groups, ratios = [], [], []
        for n in range(rounds):
            pair = (1, size) if n % 2 == 0 else (size, 1)
            rates = {s: await one_run(dsn, s, events, handler, us) for s in pair}
            singles.append(rates[1])
            groups.append(rates[size])
            ratios.append(rates[size] / rates[1])
        print(
            f"| {size} | {statistics.median(singles):,.0f} | {statistics.median(groups):,.0f} | "
            f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | {load()} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["server", "throughput"])
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--handler", choices=["cpu", "io"], default="cpu")
    parser.add_argument("--us", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    if args.what == "server":
        anyio.run(server, args.events or 100_000, args.rounds)
    else:
        events = args.events or 20_000
        anyio.run(throughput, events, args.rounds, args.handler, args.us, args.sizes)


if __name__ == "__main__":
    main()
