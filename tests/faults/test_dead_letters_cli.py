"""``worker dlq``: list, show, replay and discard parked messages from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.faults._support import APP_CONFIG, Workers, connect, wait_until
from worker import MessageStore, NewMessage

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CONFIG = APP_CONFIG.with_name("picky.toml")

CONSUMER = "notes:picky"
SCHEMA = (  # as picky.py's setup makes it
    "CREATE TABLE IF NOT EXISTS public.notes (account_id text, seq int, n bigserial);"
    "CREATE TABLE IF NOT EXISTS public.poison"
    " (account_id text PRIMARY KEY, reason text NOT NULL DEFAULT 'poisoned')"
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
        assert run.returncode == 3, run.stderr[-2000:]
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


NEW_ERROR = "RuntimeError: account b is frozen by audit 7"
REPLAY_FAILED = "replay failed; stream stays parked"


async def poisoned(database_dsn: str, conn: Any, counts: dict[str, int]) -> None:
    """Poison each account of ``counts`` and note that many entries for it."""
    store = MessageStore(conn)
    await conn.execute(SCHEMA)
    for account, count in counts.items():
        await conn.execute("INSERT INTO public.poison (account_id) VALUES ($1)", account)
        for seq in range(count):
            await note(store, account, seq)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exit 1 and wrote exactly one line: return it."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, (result.returncode, result.stderr)
    return lines[0]


async def test_a_replay_that_fails_again_inline_exits_1_with_the_new_error(
    database_dsn: str,
) -> None:
    """No worker holds the consumer, so `dlq replay` replays inline: the message fails again
    with a new error, the command exits 1 with one line naming it, the parked message stores
    it once, and the stream stays parked with no replay pending."""
    conn = await connect(database_dsn)
    try:
        await poisoned(database_dsn, conn, {"b": 3})
        run = cli(database_dsn, "run", "--until-caught-up", "--only", "notes")
        assert run.returncode == 3, run.stderr[-2000:]
        before = parked(database_dsn)
        assert [r["attempts"] for r in before] == [2, 0, 0]
        await conn.execute("UPDATE public.poison SET reason = 'frozen by audit 7'")

        line = one_error_line(cli(database_dsn, "dlq", "replay", str(before[0]["id"])))

        assert line == (
            f"worker: error: replay of picky-b for consumer {CONSUMER} failed at picky-b@0: "
            f"{NEW_ERROR}; the stream stays parked"
        )
        after = parked(database_dsn)
        assert [(r["id"], r["attempts"], r["error"]) for r in after] == [
            (before[0]["id"], 3, "account b is frozen by audit 7"),
            (before[1]["id"], 0, None),
            (before[2]["id"], 0, None),
        ]
        assert not any(r["replay_requested"] for r in after)
        assert "b" not in await notes(conn)
    finally:
        await conn.close()


async def test_a_replay_that_fails_again_in_the_running_worker_is_tried_once(
    database_dsn: str, tmp_path: Path
) -> None:
    """A worker holds the consumer, so `dlq replay` asks it and waits: the message fails again,
    the worker stores the new error once, logs the failure once and does not try again; the
    command exits 1 with one line naming the error. Two later replays of other streams, which
    the worker completes, show that it went on refreshing without retrying the failed one."""
    conn = await connect(database_dsn)
    workers = Workers(
        database_dsn, tmp_path, config=CONFIG, retry_base_delay=0.001, poll_interval_max=0.1
    )
    try:
        await poisoned(database_dsn, conn, {"b": 3, "c": 1, "d": 1})
        worker = await workers.start("--only", "notes")

        async def all_parked() -> bool:
            worker.assert_running()
            return await conn.fetchval("SELECT count(*) FROM worker.dead_letters") == 5

        await wait_until(all_parked, 30, "every poisoned entry to be parked", worker)
        head = await conn.fetchrow(
            "SELECT id, attempts FROM worker.dead_letters WHERE stream_name = 'picky-b' "
            "ORDER BY global_position LIMIT 1"
        )
        assert head["attempts"] == 2
        await conn.execute("UPDATE public.poison SET reason = 'frozen by audit 7'")

        line = one_error_line(
            cli(database_dsn, "dlq", "replay", "--consumer", CONSUMER, "--stream", "picky-b")
        )

        assert line == (
            f"worker: error: replay of picky-b for consumer {CONSUMER} failed at picky-b@0: "
            f"{NEW_ERROR}; the stream stays parked"
        ), worker.tail()
        # Two replays the worker completes, one after the other: the refresh that did the
        # first has ended when the second is done, and each refresh would retry b if its
        # replay request were still standing.
        await conn.execute("DELETE FROM public.poison WHERE account_id IN ('c', 'd')")
        for stream in ("picky-c", "picky-d"):
            done = cli(database_dsn, "dlq", "replay", "--consumer", CONSUMER, "--stream", stream)
            assert done.returncode == 0, done.stderr + worker.tail()
        stored = await conn.fetch(
            "SELECT id, attempts, error, replay_requested FROM worker.dead_letters "
            "ORDER BY global_position"
        )
        assert [tuple(r) for r in stored][:1] == [
            (head["id"], 3, "account b is frozen by audit 7", False)
        ], worker.tail()
        assert len(stored) == 3 and not any(r["replay_requested"] for r in stored)
        failures = [e for e in worker.events() if e.get("event") == REPLAY_FAILED]
        assert len(failures) == 1, worker.tail()
        assert failures[0]["error"] == NEW_ERROR and failures[0]["stream_name"] == "picky-b"
        assert (await notes(conn)).get("c") == [0] and "b" not in await notes(conn)
    finally:
        await workers.kill_all()
        await conn.close()
