"""Takeover time of a frozen leaseholder: SIGSTOP the holder mid catch-up, time the standby.

Two ``worker run`` processes of the fault suite's counter application on a scratch database;
the holder is frozen while it applies batches and the clock runs until the standby owns the
consumer's lease. The lease runs out ``lease_ttl`` after the holder's last heartbeat (renewed
every ``lease_ttl / 3``); the standby looks every second.

    python -m bench.takeover [--ttl 15] [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from bench.engine import fresh_database, server_dsn
from tests.faults._support import (
    CONSUMER,
    Ledger,
    Workers,
    connect,
    position,
    wait_until,
    write_deposits,
)

DATABASE = "worker_bench_takeover"


async def one_takeover(dsn: str, ttl: float, seed: int) -> float:
    """Seconds from SIGSTOP of the holder to the standby owning the lease."""
    conn = await connect(dsn)
    with tempfile.TemporaryDirectory() as folder:
        workers = Workers(dsn, Path(folder), batch_size=200, lease_ttl=ttl)
        try:
            await write_deposits(conn, Ledger(), random.Random(seed), accounts=200, per_account=200)
            holder = await workers.start()

            async def applying() -> bool:
                return await position(conn) > 0

            await wait_until(applying, 30, "the holder's first batch", holder)
            standby = await workers.start()
            await standby.wait_logged("waiting for consumer held by another process")
            holder.process.send_signal(signal.SIGSTOP)
            frozen = time.monotonic()

            async def standby_owns() -> bool:
                owner = await conn.fetchval(
                    "SELECT owner FROM worker.leases WHERE consumer = $1", CONSUMER
                )
                return bool(owner and owner.endswith(f":{standby.process.pid}"))

            await wait_until(standby_owns, ttl + 30, "the takeover", holder, standby, interval=0.01)
            took = time.monotonic() - frozen
            holder.process.send_signal(signal.SIGCONT)
            return took
        finally:
            await workers.kill_all()
            await conn.close()


async def main(ttl: float, runs: int) -> list[float]:
    server = server_dsn()
    times = []
    for run in range(runs):
        dsn = await fresh_database(server, DATABASE)
        took = await one_takeover(dsn, ttl, seed=run)
        print(f"run {run + 1}: takeover after {took:.2f} s")
        times.append(took)
    return times


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ttl", type=float, default=15.0, help="[worker] lease_ttl (seconds)")
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    times = anyio.run(main, options.ttl, options.runs)
    print(
        f"lease_ttl {options.ttl:g} s, {len(times)} runs: takeover median "
        f"{statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f})"
    )


if __name__ == "__main__":
    run()
