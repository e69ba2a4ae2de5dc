"""A consumer group's size of record and its hand-over to another size, in the database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from worker import MessageStore, NewMessage
from worker.engine import handover
from worker.testing import group_member

if TYPE_CHECKING:
    import asyncpg

pytestmark = pytest.mark.anyio

BASE = "tally:till"


async def admitted(pool: asyncpg.Pool[Any], consumer: str) -> str | None:
    async with pool.acquire() as conn, conn.transaction():
        return await handover.admit(conn, consumer)


async def hold(pool: asyncpg.Pool[Any], consumer: str, position: int) -> None:
    """A live lease and a committed position, as a running member has them."""
    await pool.execute(
        "INSERT INTO worker.leases (consumer, epoch, owner, expires_at)"
        " VALUES ($1, 1, 'elsewhere', now() + interval '1 hour')",
        consumer,
    )
    await pool.execute(
        "INSERT INTO worker.positions (consumer, position, high_water) VALUES ($1, $2, $2)",
        consumer,
        position,
    )


async def test_the_first_size_is_the_groups_and_another_size_stands_by(
    pool: asyncpg.Pool[Any],
) -> None:
    """The first member to take its lease records its size; members of that size are admitted,
    a member of another size gets the reason it stands by; a rebuild's consumer is not held."""
    assert await admitted(pool, f"{BASE}@0/2") is None
    assert await admitted(pool, f"{BASE}@1/2") is None
    assert await admitted(pool, f"{BASE}@0/3") == f"group {BASE} runs at size 2, this process at 3"
    assert await admitted(pool, BASE) == f"group {BASE} runs at size 2, this process at 1"
    assert await admitted(pool, f"{BASE}#g2") is None


async def test_a_process_hands_over_only_once_no_member_of_the_size_before_is_held(
    pool: asyncpg.Pool[Any],
) -> None:
    """Without force, a hand-over waits while a member of the size of record is held; the
    command (force) fences them, records their final positions and starts the new members at
    the least, pinned: a process of the size before cannot take the group back."""
    assert await admitted(pool, f"{BASE}@0/2") is None
    await hold(pool, f"{BASE}@0/2", 40)
    await hold(pool, f"{BASE}@1/2", 25)
    async with pool.acquire() as conn:
        assert await handover.hand_over(conn, BASE, 3, force=False) is None
        assert await handover.resize(conn, [BASE], 3) == [
            handover.Record(3, 2, (40, 25), pinned=True)
        ]
        assert await handover.resize(conn, [BASE], 3) == [None]  # there already
    epochs = await pool.fetch(
        "SELECT epoch, expires_at FROM worker.leases WHERE consumer LIKE $1", f"{BASE}@%/2"
    )
    assert [tuple(row) for row in epochs] == [(2, None), (2, None)]
    starts = await pool.fetch(
        "SELECT consumer, position FROM worker.positions WHERE consumer LIKE $1 ORDER BY 1",
        f"{BASE}@%/3",
    )
    assert [tuple(row) for row in starts] == [(f"{BASE}@{m}/3", 25) for m in range(3)]
    assert await admitted(pool, f"{BASE}@0/2") == f"group {BASE} runs at size 3, this process at 2"
    await pool.execute("DELETE FROM worker.leases")
    async with pool.acquire() as conn:
        assert await handover.hand_over(conn, BASE, 2, force=False) is None  # pinned


async def test_parked_messages_of_the_size_before_refuse_a_hand_over(
    pool: asyncpg.Pool[Any],
) -> None:
    """A member of the size before with a parked message: the hand-over is refused, saying how
    many and what to do, and nothing changes."""
    assert await admitted(pool, f"{BASE}@0/2") is None
    await pool.execute(
        "INSERT INTO worker.dead_letters (consumer, message_id, stream_name, position,"
        " global_position, type) VALUES ($1, 'm', 'till-1', 0, 7, 'Paid')",
        f"{BASE}@1/2",
    )
    async with pool.acquire() as conn:
        with pytest.raises(handover.HandOverError, match=r"1 parked message.*worker dlq"):
            await handover.resize(conn, [BASE], 3)
        found = await handover.record(conn, BASE)
    assert found == handover.Record(2)


async def test_after_a_hand_over_a_member_reads_what_no_former_owner_had_handled(
    store: MessageStore,
) -> None:
    """Each member of the new size reads, from the least final position, exactly the messages
    of its streams above the final position of their former owner, in global order; the
    members of 3 together read each message no member of 2 had handled, once."""
    for n in range(120):
        await store.write(f"till-{n % 17}", NewMessage("Paid", {"n": n}))
    handed = (70, 31)
    everything = await store.read_category("till", 1, 1000)
    for size in (3, 1):
        shares = []
        for member in range(size) if size > 1 else [None]:
            grouped = {} if member is None else {"consumer_group_member": member}
            read = await store.read_category(
                "till",
                min(handed) + 1,
                1000,
                consumer_group_size=None if member is None else size,
                handed=(2, handed),
                **grouped,
            )
            shares += [m.global_position for m in read]
            assert read == sorted(read, key=lambda m: m.global_position)
        owner = {m.global_position: group_member(m.stream_name, 2) for m in everything}
        want = [p for p in sorted(owner) if p > handed[owner[p] or 0]]
        assert sorted(shares) == want, size
