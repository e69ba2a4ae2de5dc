"""``worker events check`` finds the one stored message that no longer decodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.faults._support import APP_CONFIG

if TYPE_CHECKING:
    import asyncpg

pytestmark = pytest.mark.anyio

# 100,000 deposits through MessageDB's own write_message, in one statement.
_DEPOSITS = """
SELECT message_store.write_message(
    gen_random_uuid()::text, 'counter-' || (g % 1000), 'Deposited',
    jsonb_build_object('account_id', 'a' || (g % 1000), 'amount', g, 'seq', g / 1000), NULL)
FROM generate_series(1, $1) AS g
"""


def check(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "--config", str(APP_CONFIG), "events", "check", *args],
        env={**os.environ, "WORKER_EVENT_STORE__DATABASE_URI": dsn},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_a_planted_bad_message_among_100000_good_ones_is_found(
    pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """One Deposited whose amount is no number, among 100,000 that decode: exit 1, the type's
    count, the bad message's stream and position and the validation error; resuming after it
    finds nothing more."""
    await pool.execute(_DEPOSITS, 50_000)
    bad = await pool.fetchval(
        "SELECT message_store.write_message(gen_random_uuid()::text, 'counter-bad', 'Deposited', "
        """'{"account_id": "x", "amount": "lots", "seq": 0}'::jsonb, NULL)"""
    )
    await pool.execute(_DEPOSITS, 50_000)
    bad_global = await pool.fetchval(
        "SELECT global_position FROM message_store.messages WHERE stream_name = 'counter-bad'"
    )
    result = check(database_dsn, "--json")
    assert result.returncode == 1, result.stderr
    found = json.loads(result.stdout)
    assert found["checked"] == 100_001 and found["failed"] == 1
    first = found["types"]["Deposited"]["first_failure"]
    assert (first["stream_name"], first["position"], first["global_position"]) == (
        "counter-bad",
        bad,
        bad_global,
    )
    assert "amount" in first["error"], first
    table = check(database_dsn)
    assert table.returncode == 1 and "counter-bad@0" in table.stdout, table.stdout
    resumed = check(database_dsn, "--from", str(bad_global + 1), "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(resumed.stdout)["checked"] == 50_000
