"""A consumer group member's read through its group size's index: MessageDB's membership rule,
exactly, at the cost of reading the member's own rows only."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from tests.cli import worker
from tests.integration.test_engine import FAST
from worker import BaseEvent, Context, Domain, MessageStore, NewMessage, Runner, handle
from worker.errors import PrivilegeError
from worker.ops.install import install_application
from worker.ops.settings import Settings
from worker.store import queries as q
from worker.store.group_index import (
    check_group_index_rights,
    create_group_index,
    group_index_ready,
)

pytestmark = pytest.mark.anyio

# 100,000 stream names of every shape MessageDB's functions distinguish: no id, an empty id,
# compound ids (`+`), several dashes, categories with types (`:`), and non-ASCII text.
NAMES = """
SELECT CASE g % 8
    WHEN 0 THEN 'account-' || g
    WHEN 1 THEN 'account:command-' || md5(g::text)
    WHEN 2 THEN 'order-' || g || '+' || (g % 97)
    WHEN 3 THEN 'a-b-' || g || '-c+d+e'
    WHEN 4 THEN 'category' || g
    WHEN 5 THEN 'x-'
    WHEN 6 THEN 'kasse-' || chr(228 + g % 40) || g
    ELSE 'y-+' || g
END AS name
FROM generate_series(1, 100000) g
"""


async def test_member_hash_is_message_db_hash_of_the_cardinal_id(pool: asyncpg.Pool[Any]) -> None:
    """worker.member_hash gives MessageDB's hash_64(cardinal_id(name)) for 100,000 names, and
    so the same member modulo every size."""
    row = await pool.fetchrow(
        f"""
        SELECT count(*) AS names,
               count(*) FILTER (WHERE worker.member_hash(name) IS DISTINCT FROM
                   message_store.hash_64(message_store.cardinal_id(name))) AS differ,
               count(*) FILTER (WHERE worker.member_hash(name) IS NULL) AS without_id
        FROM ({NAMES}) names
        """
    )
    assert row is not None
    assert (row["names"], row["differ"]) == (100_000, 0)
    assert row["without_id"] == 12_500  # the names without a dash belong to no member


async def write_streams(store: MessageStore, category: str, streams: int, rounds: int) -> None:
    for n in range(rounds):
        for s in range(streams):
            stream = f"{category}-{s}+{n % 3}" if s % 5 == 0 else f"{category}-{s}"
            await store.write(stream, NewMessage("Happened", {"n": n}))


async def message_db_share(
    pool: asyncpg.Pool[Any], category: str, member: int, size: int
) -> list[int]:
    rows = await pool.fetch(
        "SELECT global_position FROM message_store.get_category_messages($1, 1, 100000, NULL,"
        " $2, $3)",
        category,
        member,
        size,
    )
    return [row[0] for row in rows]


async def worker_share(store: MessageStore, category: str, member: int, size: int) -> list[int]:
    read: list[int] = []
    position = 1
    while batch := await store.read_category(
        category, position, 7, consumer_group_member=member, consumer_group_size=size
    ):
        read += [m.global_position for m in batch]
        position = batch[-1].global_position + 1
    return read


@pytest.mark.parametrize("size", [2, 3, 8])
async def test_a_member_reads_what_get_category_messages_returns_with_or_without_index(
    pool: asyncpg.Pool[Any], store: MessageStore, size: int
) -> None:
    """Each member's batches, with the index and without, are MessageDB's own rows for that
    member, in global order; together the members read every message once."""
    await write_streams(store, "groupread", streams=40, rounds=4)
    for indexed in (False, True):
        async with pool.acquire() as conn:
            if indexed:
                assert await create_group_index(conn, size)
            assert await group_index_ready(conn, size) is indexed
        shares = [await worker_share(store, "groupread", m, size) for m in range(size)]
        for member, share in enumerate(shares):
            assert share == await message_db_share(pool, "groupread", member, size)
        assert sorted(p for share in shares for p in share) == [
            m.global_position for m in await store.read_category("groupread", 1, 1000)
        ]


async def test_a_member_read_walks_its_size_index_in_order(pool: asyncpg.Pool[Any]) -> None:
    """With the index of its size built (and the table analyzed with it), a member's batch is
    an ordered walk of that index that stops at the batch's end, not a sort of its share."""
    await pool.execute(
        "SELECT message_store.write_message(gen_random_uuid()::text, 'groupplan-' || (g % 300),"
        " 'Happened', '{}'::jsonb, NULL, NULL) FROM generate_series(1, 20000) g"
    )
    async with pool.acquire() as conn:
        assert await create_group_index(conn, 4)
        assert not await create_group_index(conn, 4)  # there already
        plan = await conn.fetch("EXPLAIN " + q.read_group(4), "groupplan", 1, 100, None, 1)
    text = "\n".join(row[0] for row in plan)
    assert f"Index Scan using {q.group_index_name(4)}" in text and "Sort" not in text, text


async def test_an_invalid_index_is_built_again(pool: asyncpg.Pool[Any]) -> None:
    """An index an interrupted build left invalid is dropped and built anew, valid."""
    async with pool.acquire() as conn:
        await conn.execute(q.create_group_index(2).replace("CONCURRENTLY ", ""))
        await conn.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
            "'message_store.worker_group_2'::regclass"
        )
        assert not await group_index_ready(conn, 2)
        assert await create_group_index(conn, 2)
        assert await group_index_ready(conn, 2)


async def test_a_role_that_does_not_own_the_table_is_refused(database_dsn: str, role: str) -> None:
    """Building the index needs the owner of MessageDB's table: another role gets one error
    naming the index and the table, from the build and from the check an install makes first."""
    conn = await asyncpg.connect(database_dsn, user=role)
    try:
        with pytest.raises(PrivilegeError, match=r"worker_group_2 .* message_store\.messages"):
            await create_group_index(conn, 2)
        with pytest.raises(PrivilegeError, match=r"worker_group_4 .* message_store\.messages"):
            await check_group_index_rights(conn, [4, 8])  # before an install changes anything
    finally:
        await conn.close()


def test_a_group_size_must_be_a_positive_int() -> None:
    """The size is part of the statement's text: anything but a positive int is refused."""
    for bad in (0, -1, True, "2"):
        with pytest.raises(ValueError, match="consumer group size"):
            q.read_group(bad)  # type: ignore[arg-type]


def grouped_domain() -> Domain:
    domain = Domain("grouped")

    @domain.event(category="parcel")
    class Scanned(BaseEvent):
        where: str

    for name, size in (("sorter", 4), ("router", 2), ("counter", 1)):

        @domain.event_handler(name=name, stream_categories=["parcel"], group_size=size)
        class Handler:
            @handle(Scanned)
            async def scanned(self, event: Scanned, ctx: Context) -> None:
                pass

    return domain


async def test_install_builds_the_index_of_every_group_size_the_subscribers_use(
    database_dsn: str,
) -> None:
    """`worker db install` builds one index per group size in use (none for single
    consumers), and finds them there the next time."""
    settings = Settings()
    done = await install_application(settings, grouped_domain(), database_dsn)
    assert done.group_indexes == ["worker_group_2", "worker_group_4"]
    again = await install_application(settings, grouped_domain(), database_dsn)
    assert again.group_indexes == []


async def test_group_resize_answers_an_unknown_subscriber_in_one_line(database_dsn: str) -> None:
    """`worker group resize` with a name no subscriber has exits 2 naming the known ones."""
    done = await worker(database_dsn, "group", "resize", "nosuch", "3")
    assert done.code == 2, str(done)
    assert done.errors == ["worker: error: no subscriber named 'nosuch' (subscribers: balances)"], (
        str(done)
    )


async def test_a_member_without_its_index_says_so_when_it_starts(database_dsn: str) -> None:
    """Members whose group size has no index warn at start that they scan the category (the
    single consumer does not); once the indexes are built, they start without a word of it."""
    event = (
        "consumer group member reads without its index, scanning the category: "
        "run `worker db install` with this group_size"
    )

    async def warned() -> list[str]:
        with capture_logs() as logs:
            await Runner(grouped_domain(), database_dsn, FAST).run(
                until_caught_up=True, handle_signals=False
            )
        return sorted(e["consumer"] for e in logs if e["event"] == event)

    assert await warned() == [f"router:parcel@{m}/2" for m in range(2)] + [
        f"sorter:parcel@{m}/4" for m in range(4)
    ]
    conn = await asyncpg.connect(database_dsn)
    try:
        for size in (2, 4):
            await create_group_index(conn, size)
    finally:
        await conn.close()
    assert await warned() == []
