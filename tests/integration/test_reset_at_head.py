"""``worker reset --to`` at the category head exactly is a position like any other: no
``--force`` needed; one past it is refused."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.cli import worker
from worker import NewMessage

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio

COUNTER = "balances:counter"


async def counter_position(pool: asyncpg.Pool[Any]) -> int | None:
    value: int | None = await pool.fetchval(
        "SELECT position FROM worker.positions WHERE consumer = $1", COUNTER
    )
    return value


async def test_reset_to_the_head_exactly_needs_no_force(
    database_dsn: str, pool: asyncpg.Pool[Any], store: MessageStore
) -> None:
    """With the consumer at 0, ``reset --to HEAD`` (the category's last global position) is
    set without ``--force`` (exit 0); ``--to HEAD+1`` is refused in one line naming --force
    (exit 2) and leaves the position at the head."""
    for n in range(3):
        await store.write("counter-a", NewMessage("Deposited", {"account_id": "a", "amount": n}))
    await store.write("other-b", NewMessage("Noise", {}))  # the store's head is not the category's
    head = await store.category_head("counter")
    assert head is not None and head < await store.global_head()

    at_head = await worker(database_dsn, "reset", COUNTER, "--to", str(head))
    assert at_head.code == 0, at_head
    assert f"{COUNTER}: position 0 -> {head}" in at_head.stdout, at_head
    assert await counter_position(pool) == head

    past = await worker(database_dsn, "reset", COUNTER, "--to", str(head + 1))
    assert past.code == 2, past
    assert len(past.errors) == 1 and "--force" in past.errors[0], past
    assert await counter_position(pool) == head
