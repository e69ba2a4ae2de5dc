"""The wake-up waiter: a consumer sleeps until woken for its category, or its poll interval."""

from __future__ import annotations

import anyio
import pytest

from worker.engine.wakeups import Waker

pytestmark = pytest.mark.anyio


async def test_a_wake_for_the_category_ends_the_wait() -> None:
    """A sleeper on ``order`` wakes when ``order`` is woken, long before its interval."""
    waker = Waker()
    woken: list[bool] = []
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:

            async def sleep() -> None:
                woken.append(await waker.wait("order", seconds=10))

            tg.start_soon(sleep)
            await anyio.wait_all_tasks_blocked()
            waker.wake("order")
    assert woken == [True]


async def test_a_wake_for_another_category_does_not() -> None:
    """A wake of ``book`` leaves a sleeper on ``order`` sleeping until its interval passes."""
    waker = Waker()
    waker_result: list[bool] = []
    async with anyio.create_task_group() as tg:

        async def sleep() -> None:
            waker_result.append(await waker.wait("order", seconds=0.05))

        tg.start_soon(sleep)
        await anyio.wait_all_tasks_blocked()
        waker.wake("book")
    assert waker_result == [False]


async def test_a_wake_while_busy_is_not_lost() -> None:
    """A wake that comes after the mark (while the consumer was reading) returns at once."""
    waker = Waker()
    mark = waker.mark("order")
    waker.wake("order")
    with anyio.fail_after(0.5):
        assert await waker.wait("order", seconds=10, since=mark)


async def test_wake_all_and_recheck_reach_every_sleeper() -> None:
    """``wake_all`` wakes sleepers of every category; a recheck is seen once by its consumer."""
    waker = Waker()
    results: list[bool] = []
    async with anyio.create_task_group() as tg:
        for category in ("order", "book"):
            tg.start_soon(lambda c=category: _wait_into(waker, c, results))
        await anyio.wait_all_tasks_blocked()
        waker.recheck("ledger:acct")
    assert results == [True, True]
    assert waker.recheck_requested("ledger:acct")
    assert not waker.recheck_requested("ledger:acct")


async def _wait_into(waker: Waker, category: str, results: list[bool]) -> None:
    results.append(await waker.wait(category, seconds=10))
