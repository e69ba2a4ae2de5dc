"""``worker events check`` throughput: messages decoded per second over a whole store.

On a scratch database (``worker_bench_events`` on the server ``WORKER_EVENT_STORE__DATABASE_URI``
names) it writes N ``Deposited`` messages of the fault suite's counter application through
MessageDB's ``write_message`` (one SQL statement), then times ``worker events check`` as a
process (start-up included) and reports messages per second.

    .venv/bin/python -m bench.events_check [--messages 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import anyio

from bench.engine import fresh_database, server_dsn
from tests.faults._support import APP_CONFIG, connect

DATABASE = "worker_bench_events"

_WRITE = """
SELECT count(message_store.write_message(
    gen_random_uuid()::text, 'counter-' || (g % 10000), 'Deposited',
    jsonb_build_object('account_id', 'a' || (g % 10000), 'amount', g, 'seq', g / 10000), NULL))
FROM generate_series($1::int, $2::int) AS g
"""


async def prepare(messages: int) -> str:
    dsn = await fresh_database(server_dsn(), DATABASE)
    conn = await connect(dsn)
    try:
        for start in range(1, messages + 1, 100_000):
            await conn.execute(_WRITE, start, min(start + 99_999, messages))
    finally:
        await conn.close()
    return dsn


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    options = parser.parse_args()
    dsn = anyio.run(prepare, options.messages)
    env = {**os.environ, "WORKER_EVENT_STORE__DATABASE_URI": dsn}
    command = [sys.executable, "-m", "worker", "--config", str(APP_CONFIG), "events", "check"]
    started = time.perf_counter()
    done = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    checked = json.loads(done.stdout)["checked"]
    print(f"{checked:,} messages checked in {seconds:.1f} s: {checked / seconds:,.0f} messages/s")


if __name__ == "__main__":
    run()
