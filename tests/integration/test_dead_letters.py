"""What operators ask of the parked messages (``PostgresParkedMessages`` beyond the engine's
``ParkedMessages``): listing, showing, replay states, discarding one, counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from worker import MessageStore, NewMessage
from worker.engine.dead_letters import Failure, PostgresParkedMessages, ReplayState

if TYPE_CHECKING:
    import asyncpg

pytestmark = pytest.mark.anyio


async def parked_stream(store: MessageStore, pool: asyncpg.Pool[Any]) -> list[int]:
    """Two messages of ``note-1`` parked for ``notes:note``, the second behind the first;
    their ids."""
    for n in (1, 2):
        await store.write("note-1", NewMessage("Noted", {"n": n}))
    failure = Failure(RuntimeError("cannot note"), 3, datetime.now(UTC))
    parked = PostgresParkedMessages(pool)
    async with pool.acquire() as conn:
        for n, message in enumerate(await store.read_stream("note-1")):
            await parked.park(conn, "notes:note", message, failure if n == 0 else None)
    return [row["id"] for row in await parked.listing("notes:note", "note-1")]


async def test_replay_state_names_the_first_parked_message_and_the_request(
    store: MessageStore, pool: asyncpg.Pool[Any]
) -> None:
    """The replay state is the stream's first parked message with its error, requested once
    a replay was asked for."""
    await parked_stream(store, pool)
    parked = PostgresParkedMessages(pool)
    before = await parked.replay_state("notes:note", "note-1")
    await parked.request_replay("notes:note", "note-1")
    after = await parked.replay_state("notes:note", "note-1")
    assert (before, after) == (
        ReplayState(0, "RuntimeError: cannot note", False),
        ReplayState(0, "RuntimeError: cannot note", True),
    )


async def test_discarding_one_parked_message_leaves_the_others(
    store: MessageStore, pool: asyncpg.Pool[Any]
) -> None:
    """``discard_one`` drops that message alone: it can no longer be shown, the count drops
    by one, and a second discard of it finds nothing."""
    first, second = await parked_stream(store, pool)
    parked = PostgresParkedMessages(pool)
    assert await parked.discard_one(first) == 1
    assert await parked.show(first) is None
    assert await parked.counts() == {"notes:note": 1}
    assert (await parked.show(second) or {})["stream_name"] == "note-1"
    assert await parked.discard_one(first) == 0
