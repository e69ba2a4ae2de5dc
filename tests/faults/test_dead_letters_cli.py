"""``worker dlq``: list, show, replay and discard parked messages from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import anyio
import pytest

from tests.faults._support import APP_CONFIG, connect
from worker import MessageStore, NewMessage

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CONFIG = APP_CONFIG.with_name("picky.toml")

CONSUMER = "notes:picky"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS public.notes (account_id text, seq int, n bigserial);"
    "CREATE TABLE IF NOT EXISTS public.poison (account_id text PRIMARY KEY)"
)


def environment(dsn: str) -> dict[str, str]:
    return {
        **os.environ,
        "WORKER_EVENT_STORE__DATABASE_URI": dsn,
        "WORKER_WORKER__RETRY_BASE_DELAY": "0.001",
        "WORKER_WORKER__POLL_INTERVAL_MAX": "0.1",
    }


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "--config", str(CONFIG), *args],
        capture_output=True,
        text=True,
        env=environment(dsn),
        timeout=90,
        check=False,
    )


async def notes(conn: Any) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for row in await conn.fetch("SELECT account_id, seq FROM public.notes ORDER BY n"):
        found.setdefault(row[0], []).append(row[1])
    return found


async def note(store: MessageStore, account: str, seq: int) -> None:
    await store.write(f"picky-{account}", NewMessage("Noted", {"account_id": account, "seq": seq}))


def parked(dsn: str) -> list[dict[str, Any]]:
    listed = cli(dsn, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


async def test_list_show_replay_and_discard(database_dsn: str) -> None:
    """A poisoned stream parks, its later entries behind it; after the fix `dlq replay`
    completes it in order (inline, or through the running worker that holds the consumer);
    `dlq discard` drops a stream's parked entries."""
    conn = await connect(database_dsn)
    store = MessageStore(conn)
    try:
        await conn.execute(SCHEMA)
        await conn.execute("INSERT INTO public.poison VALUES ('b')")
        for seq in range(4):
            for account in ("a", "b", "c"):
                await note(store, account, seq)
        run = cli(database_dsn, "run", "--until-caught-up", "--only", "notes")
        assert run.returncode == 0, run.stderr[-2000:]
        assert await notes(conn) == {"a": [0, 1, 2, 3], "c": [0, 1, 2, 3]}

        rows = parked(database_dsn)
        assert [(r["stream_name"], r["position"]) for r in rows] == [
            ("picky-b", p) for p in range(4)
        ]
        head = rows[0]
        assert head["attempts"] == 2 and "account b is poisoned" in head["error"]
        assert all(r["blocked_by"] == head["id"] and r["error"] is None for r in rows[1:])
        shown = cli(database_dsn, "dlq", "show", str(head["id"]))
        detail = json.loads(shown.stdout)
        assert "Traceback" in detail["traceback"]
        assert detail["message"]["data"] == {"account_id": "b", "seq": 0}
        assert cli(database_dsn, "dlq", "list").returncode == 0

        # The fix, then a replay run by the command itself (no worker holds the consumer).
        await conn.execute("DELETE FROM public.poison")
        replay = cli(database_dsn, "dlq", "replay", str(head["id"]))
        assert replay.returncode == 0, replay.stderr
        assert "replayed 4 message(s) of picky-b; 0 still parked" in replay.stdout
        assert (await notes(conn))["b"] == [0, 1, 2, 3]
        assert parked(database_dsn) == []

        # A replay while a worker holds the consumer: the worker does it.
        await conn.execute("INSERT INTO public.poison VALUES ('c')")
        await note(store, "c", 4)
        await note(store, "c", 5)
        worker = subprocess.Popen(  # noqa: ASYNC220 - started once, waited for at the end
            [sys.executable, "-m", "worker", "--config", str(CONFIG), "run", "--only", "notes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=environment(database_dsn),
        )
        try:
            with anyio.fail_after(30):
                while len(parked(database_dsn)) < 2:
                    await anyio.sleep(0.1)
            await conn.execute("DELETE FROM public.poison")
            replay = cli(
                database_dsn, "dlq", "replay", "--consumer", CONSUMER, "--stream", "picky-c"
            )
            assert replay.returncode == 0, replay.stderr
            assert "in the running worker" in replay.stdout
            assert (await notes(conn))["c"] == [0, 1, 2, 3, 4, 5]

            # Discard: a poisoned entry dropped, the stream's later ones with it.
            await conn.execute("INSERT INTO public.poison VALUES ('a')")
            await note(store, "a", 4)
            await note(store, "a", 5)
            with anyio.fail_after(30):
                while len(parked(database_dsn)) < 2:
                    await anyio.sleep(0.1)
            dropped = cli(
                database_dsn, "dlq", "discard", "--consumer", CONSUMER, "--stream", "picky-a"
            )
            assert dropped.returncode == 0 and "discarded 2 parked message(s)" in dropped.stdout
            assert parked(database_dsn) == []
            assert (await notes(conn))["a"] == [0, 1, 2, 3]
        finally:
            worker.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert worker.wait(timeout=20) == 0
            assert time.monotonic() - started < 15
        missing = cli(database_dsn, "dlq", "replay", "999999")
        assert missing.returncode == 1 and "no parked message with id 999999" in missing.stderr
    finally:
        await conn.close()
