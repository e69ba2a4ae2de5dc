"""On PostgreSQL, ``ctx.table(Model)`` for a read model the projector does not declare fails
the message exactly as in memory: the same error, retried, then parked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from worker import BaseEvent, Context, Domain, NewMessage, ReadModel, Runner, on
from worker.ops.settings import WorkerSettings
from worker.testing import in_stream, project

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio

FAST = WorkerSettings(batch_size=50, max_attempts=2, retry_base_delay=0.001, retry_max_delay=0.01)


class Visited(BaseEvent):
    page: str


class Page(ReadModel):
    __table__ = "declared_pages"
    __key__ = "page"

    page: str
    visits: int = 0


class Referrer(ReadModel):
    __table__ = "undeclared_referrers"
    __key__ = "page"

    page: str


def site() -> Domain:
    domain = Domain("site")
    domain.register_event(Visited, category="visit")

    @domain.projector(name="pages", read_models=[Page])
    class Pages:
        @on(Visited)
        def visited(self, event: Visited, ctx: Context) -> None:
            ctx.table(Page).add(event.page, visits=1)
            ctx.table(Referrer).put(Referrer(page=event.page))

    return domain


async def test_an_undeclared_read_model_fails_as_in_memory(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Both visits are parked after their retries with the in-memory kit's very error; the
    declared table is untouched and the position is at the head."""
    domain = site()
    for page in ("/", "/about"):
        await store.write("visit-1", NewMessage("Visited", {"page": page}))
    await Runner(domain, database_dsn, FAST).run(until_caught_up=True, handle_signals=False)
    rows = await pool.fetch(
        "SELECT attempts, error_type, error FROM worker.dead_letters ORDER BY global_position"
    )
    (projector,) = domain.subscribers
    in_memory = await project(
        projector.cls, in_stream("visit-1", Visited(page="/")), domain=domain, max_attempts=1
    )
    (expected,) = [str(p.failure.error) for p in in_memory.parked if p.failure is not None]
    assert [(r["attempts"], r["error_type"], r["error"]) for r in rows[:1]] == [
        (2, "UndeclaredReadModelError", expected)
    ]
    assert len(rows) == 2
    assert await pool.fetchval("SELECT count(*) FROM declared_pages") == 0
