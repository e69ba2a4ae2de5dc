"""``ctx.table(Model).update(...)`` of a row that does not exist fails its message: retried,
then parked with one line naming the read model and the key, in memory as on PostgreSQL; the
other messages of the batch are applied. ``update_if_present`` skips a missing row."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.test_engine import FAST
from worker import BaseEvent, Context, Domain, Increment, NewMessage, ReadModel, Runner, on
from worker.testing import project

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio


class Tally(ReadModel):
    __table__ = "missing_tallies"
    __key__ = "name"

    name: str
    count: int = 0


def counting(*, if_present: bool = False) -> Domain:
    """``Opened`` puts a tally; ``Counted`` updates it (with ``update_if_present`` if asked)."""
    domain = Domain("tallies")

    @domain.event(category="tally")
    class Opened(BaseEvent):
        name: str

    @domain.event(category="tally")
    class Counted(BaseEvent):
        name: str

    @domain.projector(name="tallies", stream_categories=["tally"], read_models=[Tally])
    class Tallies:
        @on(Opened)
        def opened(self, event: Opened, ctx: Context) -> None:
            ctx.table(Tally).put(Tally(name=event.name))

        @on(Counted)
        def counted(self, event: Counted, ctx: Context) -> None:
            table = ctx.table(Tally)
            change = table.update_if_present if if_present else table.update
            change(event.name, count=Increment(1))

    return domain


HISTORY = [
    ("tally-a", NewMessage("Opened", {"name": "a"})),
    ("tally-a", NewMessage("Counted", {"name": "a"})),
    ("tally-b", NewMessage("Counted", {"name": "b"})),  # never opened
    ("tally-a", NewMessage("Counted", {"name": "a"})),
]
EXPECTED = "Tally: no row with key 'b' to update; update_if_present skips a missing row"


async def test_an_update_of_a_missing_row_is_retried_then_parked_in_memory() -> None:
    """In memory (the testing kit): the update of tally b is retried, then parked naming the
    read model and the key; tally a is counted twice."""
    domain = counting()
    result = await project(domain.subscribers[0], HISTORY, max_attempts=2)
    assert result.rows(Tally) == [Tally(name="a", count=2)]
    (parked,) = result.parked
    assert (parked.stream_name, parked.listing.attempts) == ("tally-b", 2)
    assert str(parked.error).startswith(EXPECTED), parked.error


async def test_an_update_of_a_missing_row_is_retried_then_parked_on_postgres(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """On PostgreSQL (the worker): the same message parked with the same line, after its
    retries; tally a is counted twice."""
    for stream_name, message in HISTORY:
        await store.write(stream_name, message)
    await Runner(counting(), database_dsn, FAST).run(until_caught_up=True, handle_signals=False)
    rows = await pool.fetch("SELECT name, count FROM missing_tallies")
    assert [tuple(r) for r in rows] == [("a", 2)]
    (parked,) = await pool.fetch("SELECT stream_name, attempts, error FROM worker.dead_letters")
    assert (parked["stream_name"], parked["attempts"]) == ("tally-b", 3), dict(parked)
    assert parked["error"].startswith(EXPECTED), parked["error"]


async def test_update_if_present_skips_a_missing_row() -> None:
    """With ``update_if_present`` the never-opened tally is skipped: nothing is parked."""
    result = await project(counting(if_present=True).subscribers[0], HISTORY)
    assert (result.rows(Tally), result.parked) == ([Tally(name="a", count=2)], [])
