"""Messages the reader cannot fully understand, on PostgreSQL with MessageDB: a ``schemaVersion``
that is no positive integer, one newer than the class's, an upcaster that raises. ``worker run``
parks them at once (no retry, one line naming why); ``worker events check`` lists them without a
traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.test_engine import FAST
from tests.integration.test_validation_ahead import BATCH, counting_domain, run
from worker import BaseEvent, Context, Domain, NewMessage, Runner, on

if TYPE_CHECKING:
    from pathlib import Path

    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio


def shop() -> Domain:
    """``Placed`` at version 1, ``Noted`` at version 2 (v1 had ``text``) with an upcaster that
    fails on a payload without ``text``; a projector stores what it receives."""
    domain = Domain("versions")

    @domain.event(category="sale")
    class Placed(BaseEvent):
        sale_id: str

    @domain.event(category="sale", version=2)
    class Noted(BaseEvent):
        sale_id: str
        note: str

    @domain.upcaster(Noted, from_version=1)
    def text_to_note(data: dict[str, Any]) -> dict[str, Any]:
        return {"sale_id": data["sale_id"], "note": data["text"]}

    @domain.projector(name="seen", stream_categories=["sale"])
    class Seen:
        async def setup(self, conn: Any) -> None:
            await conn.execute("CREATE TABLE IF NOT EXISTS seen (sale_id text PRIMARY KEY)")

        @on(Placed)
        async def placed(self, event: Placed, ctx: Context) -> None:
            await ctx.conn.execute("INSERT INTO seen VALUES ($1)", event.sale_id)

        @on(Noted)
        async def noted(self, event: Noted, ctx: Context) -> None:
            await ctx.conn.execute("INSERT INTO seen VALUES ($1)", event.sale_id)

    domain.check()
    return domain


async def parked_at_once(
    store: MessageStore, pool: asyncpg.Pool[Any], dsn: str, message: NewMessage
) -> str:
    """Run the worker over a good sale and ``message``; check ``message`` alone was parked, at
    its first attempt, never handled; the parked error."""
    await store.write("sale-ok", NewMessage("Placed", {"sale_id": "ok"}))
    await store.write("sale-x", message)
    await Runner(shop(), dsn, FAST).run(until_caught_up=True, handle_signals=False)
    assert [r["sale_id"] for r in await pool.fetch("SELECT sale_id FROM seen")] == ["ok"]
    (parked,) = await pool.fetch("SELECT stream_name, attempts, error FROM worker.dead_letters")
    assert (parked["stream_name"], parked["attempts"]) == ("sale-x", 1), dict(parked)
    error: str = parked["error"]
    assert "\n" not in error, error
    return error


@pytest.mark.parametrize(
    ("value", "shown"), [("abc", "'abc'"), ("-5", "'-5'"), ("0", "'0'"), (None, "None")]
)
async def test_a_schema_version_that_is_no_positive_integer_is_parked_at_once(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str, value: Any, shown: str
) -> None:
    """A message whose ``schemaVersion`` is no positive integer is malformed, not version 1."""
    message = NewMessage("Placed", {"sale_id": "x"}, metadata={"schemaVersion": value})
    error = await parked_at_once(store, pool, database_dsn, message)
    assert f"schemaVersion {shown} is not a positive integer" in error, error


async def test_a_message_newer_than_its_version_1_class_is_parked_at_once(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """``schemaVersion`` 9 for a class at version 1: parked, never read with fields dropped."""
    data = {"sale_id": "x", "coupon": "NEW"}
    message = NewMessage("Placed", data, metadata={"schemaVersion": "9"})
    error = await parked_at_once(store, pool, database_dsn, message)
    assert "written at schema version 9, newer than shop.<locals>.Placed's (1)" in error, error


async def test_a_message_an_upcaster_fails_on_is_parked_at_once(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """An upcaster that raises makes its message malformed: parked at once (not retried as a
    handler failure), naming the upcaster and the version step."""
    message = NewMessage("Noted", {"sale_id": "x", "body": "?"})
    error = await parked_at_once(store, pool, database_dsn, message)
    step = "upcaster text_to_note of shop.<locals>.Noted from version 1 to 2"
    assert f"{step} raised KeyError: 'text'" in error, error


def test_events_check_lists_a_message_an_upcaster_fails_on_without_a_traceback(
    tmp_path: Path, database_dsn: str
) -> None:
    """``worker events check`` over a store holding a good and a bad version-1 ``Noted``: exit
    1, the bad message named with the upcaster and the step, no traceback."""
    (tmp_path / "noting.py").write_text(
        "from typing import Any\n"
        "from worker import BaseEvent, Domain\n"
        "domain = Domain('noting')\n"
        "@domain.event(category='note', version=2)\n"
        "class Noted(BaseEvent):\n"
        "    note: str\n"
        "@domain.upcaster(Noted, from_version=1)\n"
        "def text_to_note(data: dict[str, Any]) -> dict[str, Any]:\n"
        "    return {'note': data['text']}\n"
    )
    (tmp_path / "domain.toml").write_text(
        '[domain]\nmodules = ["noting"]\ninstance = "noting:domain"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env |= {"WORKER_EVENT_STORE__DATABASE_URI": database_dsn, "PYTHONPATH": str(tmp_path)}

    def worker(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "worker", "--config", str(tmp_path / "domain.toml")]
        return subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    written = worker("db", "install")
    assert written.returncode == 0, written.stderr
    script = (
        "import asyncio, sys\n"
        "from worker import MessageStore, NewMessage\n"
        "from worker.store.database import create_pool\n"
        "async def main():\n"
        "    pool = await create_pool(sys.argv[1], max_size=1)\n"
        "    store = MessageStore(pool)\n"
        "    await store.write('note-1', NewMessage('Noted', {'text': 'fine'}))\n"
        "    await store.write('note-2', NewMessage('Noted', {'body': 'no text'}))\n"
        "    await pool.close()\n"
        "asyncio.run(main())\n"
    )
    wrote = subprocess.run(
        [sys.executable, "-c", script, database_dsn], capture_output=True, text=True, check=False
    )
    assert wrote.returncode == 0, wrote.stderr
    table = worker("events", "check")
    output = table.stdout + table.stderr
    assert table.returncode == 1, output
    assert "Traceback" not in output, output
    assert "note-2@0" in table.stdout, output
    found = json.loads(worker("events", "check", "--json").stdout)
    assert (found["checked"], found["failed"]) == (2, 1), found
    first = found["types"]["Noted"]["first_failure"]["error"]
    assert "upcaster text_to_note of Noted from version 1 to 2 raised KeyError: 'text'" in first


async def test_a_newer_message_read_ahead_is_not_validated_ahead(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A newer-version message in the batch read ahead (whose messages are validated while the
    batch before waits on the database) is left to the handlers' turn, which parks it."""
    bad = BATCH + 5
    for n in range(2 * BATCH):
        metadata = {"schemaVersion": 9} if n == bad else None
        stream_name = "count-x" if n == bad else f"count-{n % 4}"
        await store.write(stream_name, NewMessage("Counted", {"n": n}, metadata=metadata))
    handled: list[int] = []
    await run(counting_domain(handled), database_dsn)
    assert bad not in handled
    stored = [r["n"] for r in await pool.fetch("SELECT n FROM counts ORDER BY n")]
    assert stored == [n for n in range(2 * BATCH) if n != bad]  # each once
    rows = await pool.fetch("SELECT stream_name, attempts, error FROM worker.dead_letters")
    assert [(r["stream_name"], r["attempts"]) for r in rows] == [("count-x", 1)]
    assert "written at schema version 9, newer than Counted's (1)" in rows[0]["error"]
