"""Operator actions called directly (``worker.engine.operations``), as the CLI, a console and
tests call them: names resolved once, positions set, pauses stored, parked messages handled."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.faults.app import tally
from worker import NewMessage
from worker.engine import operations
from worker.errors import UsageError, WorkerError
from worker.ops.settings import WorkerSettings

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio

TALLIES = "tallies:tally"


def test_a_consumer_is_found_by_its_name() -> None:
    """``slot_named`` gives the consumer's slot: its subscriber and category."""
    slot = operations.slot_named(tally.domain, TALLIES)
    assert (slot.subscriber.name, slot.category) == ("tallies", "tally")


def test_an_unknown_consumer_name_lists_the_known_ones() -> None:
    """An unknown name is a usage error (exit 2) naming it and every known consumer."""
    with pytest.raises(UsageError, match="no consumer named 'nope'; known: tallies:tally"):
        operations.slot_named(tally.domain, "nope")


def test_a_subscriber_name_stands_for_all_of_its_consumers() -> None:
    """``consumers_named`` turns a subscriber's name into its consumers' names."""
    assert operations.consumers_named(tally.domain, ["tallies"]) == [TALLIES]


async def test_reset_sets_a_free_consumers_position(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Reset under a free lease stores the new position and returns the one before."""
    for amount in (1, 2):
        await store.write("tally-a", NewMessage("Tallied", {"account_id": "a", "amount": amount}))
    before = await operations.reset(pool, database_dsn, tally.domain, TALLIES, 2)
    again = await operations.reset(pool, database_dsn, tally.domain, TALLIES, 1)
    assert (before, again) == (0, 2)


async def test_reset_beyond_the_head_is_refused_without_force(
    pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A position beyond the category's head would skip what comes: refused, naming --force."""
    with pytest.raises(UsageError, match=r"beyond the head of category 'tally'.*--force"):
        await operations.reset(pool, database_dsn, tally.domain, TALLIES, 5)


async def test_pause_and_resume_say_what_they_changed(pool: asyncpg.Pool[Any]) -> None:
    """Pausing twice changes the consumer once; resuming lets it go on."""
    first = await operations.pause(pool, tally.domain, ["tallies"], "maintenance")
    second = await operations.pause(pool, tally.domain, [TALLIES], None)
    resumed = await operations.resume(pool, tally.domain, ["tallies"])
    assert (first.changed, second.changed, resumed.changed) == ([TALLIES], [], [TALLIES])


async def test_a_missing_parked_message_is_one_clear_error(pool: asyncpg.Pool[Any]) -> None:
    """Asking for a parked message that does not exist names its id."""
    with pytest.raises(WorkerError, match="no parked message with id 42"):
        await operations.parked(pool, 42)


async def test_replay_of_a_stream_with_nothing_parked_replays_nothing(
    pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Replaying a stream of a free consumer runs here, under its lease: none replayed, none
    left."""
    done = await operations.replay(
        pool, database_dsn, WorkerSettings(), tally.domain, TALLIES, "tally-a"
    )
    assert (done.count, done.left) == (0, 0)
