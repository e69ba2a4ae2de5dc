"""The console's live look at the consumers: frames as ``worker status --watch`` makes them,
and a database it cannot read shown rather than ending the console."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.console.conftest import CONSUMER, ledger_app
from worker.ops.console.live import Live
from worker.store.database import create_pool

if TYPE_CHECKING:
    import asyncpg

pytestmark = pytest.mark.anyio


async def test_frames_follow_one_another_with_every_consumer(pool: asyncpg.Pool[Any]) -> None:
    """A request waiting for a frame gets one; the next one follows."""
    domain = ledger_app("unused").domain
    live = Live(interval=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(live.run, pool, domain)
        first = await live.newer(0)
        second = await live.newer(live.number)
        tg.cancel_scope.cancel()
    assert [c.consumer for c in first.consumers] == [CONSUMER]
    assert second.at >= first.at and live.number >= 2 and live.problem is None


async def test_an_unreadable_database_is_shown_and_the_looks_go_on(database_dsn: str) -> None:
    """While an open page watches, a database the console cannot read is a problem the page
    shows, not the end of the console."""
    domain = ledger_app(database_dsn).domain
    closed = await create_pool(database_dsn, min_size=1, max_size=1)
    await closed.close()
    live = Live(interval=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(live.run, closed, domain)
        async with live.watching():  # an open page
            with anyio.fail_after(10):
                while live.problem is None:
                    await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert live.problem.startswith("the status cannot be read: "), live.problem
    assert live.frame is None
