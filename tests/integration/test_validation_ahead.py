"""The next batch, read ahead, is validated into its events while the batch before waits on the
database; what fails validation is left to the handlers' turn, where it fails as it always did
(against the genuine MessageDB)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
from pydantic import field_validator

from worker import BaseEvent, Context, Domain, MessageStore, NewMessage, Runner, on
from worker.ops.settings import WorkerSettings

if TYPE_CHECKING:
    import asyncpg

pytestmark = pytest.mark.anyio

BATCH = 20

journal: list[tuple[str, int]] = []  # ("validated" | "handled", n), in the order they happened


class Counted(BaseEvent):
    n: int

    @field_validator("n")
    @classmethod
    def _noted(cls, n: int) -> int:
        journal.append(("validated", n))
        return n


def counting_domain(handled: list[int], concurrency: int = 1) -> Domain:
    """A projector that writes a row per message on the batch's connection (so each batch
    waits on the database for its statements and its commit) and lets the last message of a
    batch take a moment, long enough for the next batch's read to come back."""
    domain = Domain("test")
    domain.register_event(Counted, category="count")

    @domain.projector(name="counts", stream_categories=["count"], concurrency=concurrency)
    class Counts:
        async def setup(self, conn: Any) -> None:
            await conn.execute("CREATE TABLE IF NOT EXISTS counts (n int PRIMARY KEY)")

        @on(Counted)
        async def counted(self, event: Counted, ctx: Context) -> None:
            journal.append(("handled", event.n))
            handled.append(event.n)
            await ctx.conn.execute("INSERT INTO counts (n) VALUES ($1)", event.n)
            if event.n % BATCH == BATCH - 1:
                await anyio.sleep(0.05)

    return domain


async def run(domain: Domain, dsn: str) -> None:
    settings = WorkerSettings(batch_size=BATCH, max_attempts=1)
    await Runner(domain, dsn, settings).run(until_caught_up=True, handle_signals=False)


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_each_batch_after_the_first_is_validated_before_its_handlers_run(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str, concurrency: int
) -> None:
    journal.clear()
    for n in range(3 * BATCH):
        await store.write(f"count-{n % 4}", Counted(n=n).to_message())
    journal.clear()
    handled: list[int] = []
    await run(counting_domain(handled, concurrency), database_dsn)

    assert sorted(handled) == list(range(3 * BATCH))
    assert await pool.fetchval("SELECT count(*) FROM counts") == 3 * BATCH
    validated = [n for what, n in journal if what == "validated"]
    assert sorted(validated) == list(range(3 * BATCH))  # each message validated once
    for first in (BATCH, 2 * BATCH):  # validated ahead: all of it before its first handler
        starts = min(journal.index(("handled", n)) for n in range(first, first + BATCH))
        assert {n for what, n in journal[:starts] if what == "validated"} >= set(
            range(first, first + BATCH)
        )
        # ... and while the batch before waited on the database, after its last handler
        ended = max(journal.index(("handled", n)) for n in range(first - BATCH, first))
        assert journal.index(("validated", first)) > ended


async def test_a_malformed_message_validated_ahead_is_parked_as_malformed(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A message of the second batch that does not validate: the handlers' turn finds it
    malformed, parks it after one attempt, and handles every other message once."""
    bad = BATCH + 5
    for n in range(2 * BATCH):
        if n == bad:
            await store.write("count-x", NewMessage("Counted", {"n": "not a number"}))
        else:
            await store.write(f"count-{n % 4}", Counted(n=n).to_message())
    journal.clear()
    handled: list[int] = []
    await run(counting_domain(handled), database_dsn)

    stored = [r["n"] for r in await pool.fetch("SELECT n FROM counts ORDER BY n")]
    assert stored == [n for n in range(2 * BATCH) if n != bad]  # each once
    rows = await pool.fetch(
        "SELECT stream_name, attempts, error_type, error FROM worker.dead_letters"
    )
    assert [(r["stream_name"], r["attempts"], r["error_type"]) for r in rows] == [
        ("count-x", 1, "MalformedMessageError")
    ]
    assert "n: Input should be a valid integer" in rows[0]["error"]
