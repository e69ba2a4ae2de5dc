"""The command line's answers to what operators hit: unknown names, large or orphaned parked
messages, names never cut, a last log line on exit, and what `db install` installed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

import domain as shop
import projections  # noqa: F401  (registers the example projectors on the shop domain)
from tests.cli import EXAMPLE_APP, worker
from tests.faults._support import Workers
from worker import NewMessage
from worker.engine.dead_letters import Failure, PostgresParkedMessages

if TYPE_CHECKING:
    from pathlib import Path

    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio


async def park(
    store: MessageStore, pool: asyncpg.Pool[Any], consumer: str, stream: str, data: list[Any]
) -> list[int]:
    """Write one message per ``data`` to ``stream`` and park them for ``consumer`` the way the
    consumer does: the first with its error, the others behind it. Their dead-letter ids."""
    for item in data:
        await store.write(stream, NewMessage("Noted", item))
    messages = await store.read_stream(stream)
    failure = Failure(RuntimeError("cannot note this"), 3, datetime.now(UTC))
    parked = PostgresParkedMessages(pool)
    async with pool.acquire() as conn:
        for n, message in enumerate(messages):
            await parked.park(conn, consumer, message, failure if n == 0 else None)
    return [row["id"] for row in await parked.listing(consumer, stream)]


async def test_run_only_an_unknown_name_exits_2_listing_the_known(database_dsn: str) -> None:
    """`worker run --only` with a name that is no consumer or subscriber runs nothing: one line
    lists the known names, exit code 2."""
    result = await worker(database_dsn, "run", "--only", "balances", "--only", "balance")
    assert result.code == 2, result
    assert len(result.errors) == 1, result
    assert "--only balance: no such consumer or subscriber" in result.errors[0]
    assert "known: balances, balances:counter" in result.errors[0]


async def test_dlq_discard_of_an_unknown_id_is_an_error(database_dsn: str) -> None:
    result = await worker(database_dsn, "dlq", "discard", "424242")
    assert result.code == 1, result
    assert result.errors == ["worker: error: no parked message with id 424242"], result


async def test_dlq_show_clips_a_huge_message_unless_full(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A 6 MB message is shown clipped, saying how much is left out; `--full` shows it all."""
    blob = "x" * 6_000_000
    (parked,) = await park(store, pool, "notes:picky", "picky-big", [{"blob": blob}])
    shown = await worker(database_dsn, "dlq", "show", str(parked))
    assert shown.code == 0, shown
    assert len(shown.stdout) < 20_000
    detail = json.loads(shown.stdout)
    assert "more characters; --full shows all" in detail["message"]["data"]
    assert detail["stream_name"] == "picky-big" and "cannot note this" in detail["error"]
    full = await worker(database_dsn, "dlq", "show", str(parked), "--full")
    assert full.code == 0, full
    assert json.loads(full.stdout)["message"]["data"] == {"blob": blob}


async def test_messages_left_behind_a_discarded_head_say_what_to_do(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Discarding a stream's first parked message leaves the later ones parked: `discard` says
    so and how to go on, and `dlq list` says the message ahead was discarded."""
    head, *_ = await park(store, pool, "notes:picky", "picky-b", [{"n": n} for n in range(3)])
    dropped = await worker(database_dsn, "dlq", "discard", str(head))
    assert dropped.code == 0, dropped
    assert "discarded 1 parked message(s); 2 later message(s) of picky-b stay parked" in (
        dropped.stdout
    )
    assert "worker dlq replay --consumer notes:picky --stream picky-b" in dropped.stdout
    listed = await worker(database_dsn, "dlq", "list")
    assert listed.code == 0, listed
    assert "#None" not in listed.stdout
    assert listed.stdout.count("the message ahead was discarded") == 2, listed


async def test_names_are_never_cut_when_the_output_is_no_terminal(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Piped, `worker status` and `worker dlq list` print every consumer and stream name whole,
    however wide the table gets."""
    status = await worker(database_dsn, "status", config=EXAMPLE_APP)
    assert status.code == 0, status
    names = [slot.name for s in shop.domain.subscribers for slot in s.slots()]
    assert "book_catalog:book:fact" in names
    for name in names:
        assert name in status.stdout, status
    consumer = "a_projection_with_a_long_name:inventory_adjustments@3/4"
    stream = "inventory_adjustments-0f8fad5b-d9cb-469f-a165-70867728950e"
    await park(store, pool, consumer, stream, [{"n": 0}])
    listed = await worker(database_dsn, "dlq", "list")
    assert listed.code == 0, listed
    assert consumer in listed.stdout and stream in listed.stdout, listed


async def test_run_logs_that_it_stopped_and_why(
    store: MessageStore, database_dsn: str, tmp_path: Path
) -> None:
    """The last log line of `worker run` says the worker stopped: caught up, or signalled."""
    caught_up = await worker(database_dsn, "run", "--until-caught-up")
    assert caught_up.code == 0, caught_up
    assert [e["reason"] for e in caught_up.logged("worker stopped")] == ["caught up"], caught_up
    assert json.loads(caught_up.errors[-1])["event"] == "worker stopped"

    workers = Workers(database_dsn, tmp_path)
    try:
        running = await workers.start()
        await running.wait_logged("consumer started")
        code, _ = await running.stop(within=20)
        assert code == 0, running.tail()
        stopped = [e for e in running.events() if e.get("event") == "worker stopped"]
        assert [e["reason"] for e in stopped] == ["signal"], running.tail()
    finally:
        await workers.kill_all()
