"""Every connection the worker opens: keepalives on both ends, the read-model search path,
and the pool's optional idle-in-transaction timeout."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest

from worker.store.database import KEEPALIVE, connect, create_pool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

_SETTING = "SELECT setting FROM pg_settings WHERE name = $1"


@pytest.fixture(params=["connect", "create_pool"])
async def conn(request: pytest.FixtureRequest, database_dsn: str) -> AsyncIterator[Any]:
    """A connection made by ``connect``, or one borrowed from a ``create_pool`` pool."""
    if request.param == "connect":
        single = await connect(database_dsn)
        try:
            yield single
        finally:
            await single.close()
        return
    pool = await create_pool(database_dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as pooled:
            yield pooled
    finally:
        await pool.close()


def over_tcp(conn: Any) -> socket.socket:
    """The connection's socket; skips the test on a Unix socket (the embedded server takes no
    TCP connections), where there is no TCP to keep alive."""
    sock: socket.socket = conn._transport.get_extra_info("socket")
    if sock.family == socket.AF_UNIX:
        pytest.skip("a Unix-socket connection (the embedded server's): no TCP keepalives")
    return sock


async def test_server_side_keepalives_are_set(conn: Any) -> None:
    """The server probes an idle connection and gives up on unacknowledged data."""
    over_tcp(conn)
    assert await conn.fetchval(_SETTING, "tcp_keepalives_idle") == str(KEEPALIVE.idle)
    assert await conn.fetchval(_SETTING, "tcp_keepalives_interval") == str(KEEPALIVE.interval)
    assert await conn.fetchval(_SETTING, "tcp_keepalives_count") == str(KEEPALIVE.count)
    assert await conn.fetchval(_SETTING, "tcp_user_timeout") == str(KEEPALIVE.user_timeout * 1000)


async def test_client_socket_has_keepalives(conn: Any) -> None:
    """The client's TCP socket probes an idle connection and gives up on unacknowledged data."""
    sock = over_tcp(conn)
    assert sock.family in (socket.AF_INET, socket.AF_INET6)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE.idle
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == KEEPALIVE.interval
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVE.count
    timeout = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
    assert timeout == KEEPALIVE.user_timeout * 1000


async def test_read_model_schema_comes_first_on_the_search_path(conn: Any) -> None:
    """Unqualified names resolve in the read-model schema, then in MessageDB's."""
    assert await conn.fetchval("SELECT current_schemas(false)") == ["public", "message_store"]
    # MessageDB's functions find their table and helpers, named without a schema, second.
    written = await conn.fetchval(
        "SELECT message_store.write_message(gen_random_uuid()::text, 'probe-1', 'Probed', '{}')"
    )
    assert written == 0
    assert await conn.fetchval("SELECT message_store.stream_version('probe-1')") == 0


async def test_named_read_model_schema_is_first(database_dsn: str) -> None:
    """A pool for another read-model schema puts that one first."""
    pool = await create_pool(database_dsn, read_model_schema="reporting")
    try:
        await pool.execute("CREATE SCHEMA reporting")
        assert await pool.fetchval("SELECT current_schemas(false)") == [
            "reporting",
            "message_store",
        ]
    finally:
        await pool.close()


async def test_idle_in_transaction_timeout_ends_a_stuck_session(database_dsn: str) -> None:
    """A pool made with ``idle_in_transaction_timeout`` has the server end a session left idle
    inside a transaction; a pool made without it never does."""
    plain = await create_pool(database_dsn, min_size=1, max_size=1)
    try:
        assert await plain.fetchval(_SETTING, "idle_in_transaction_session_timeout") == "0"
    finally:
        await plain.close()
    pool = await create_pool(database_dsn, min_size=1, max_size=1, idle_in_transaction_timeout=0.2)
    monitor = await asyncpg.connect(database_dsn)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval(_SETTING, "idle_in_transaction_session_timeout") == "200"
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("SELECT 1")
            deadline = time.monotonic() + 10
            while await monitor.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            ):
                assert time.monotonic() < deadline, "the idle transaction's session still exists"
                await anyio.sleep(0.05)
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):
                await conn.fetchval("SELECT 1")
    finally:
        await monitor.close()
        await pool.close()


async def test_a_connection_back_in_the_pool_has_its_transaction_rolled_back(
    database_dsn: str,
) -> None:
    """A connection returned with a transaction open (a handler's batch cut short) comes back
    out of the pool outside any transaction, the transaction's writes undone, the session's
    settings still the worker's own."""
    pool = await create_pool(database_dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE returned (n int)")
            pid = conn.get_server_pid()
            tx = conn.transaction()
            await tx.start()
            await conn.execute("INSERT INTO returned VALUES (1)")
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == pid  # the same session
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM returned") == 0
            assert await conn.fetchval("SHOW DateStyle") == "ISO, MDY"
            assert await conn.fetchval("SHOW application_name") == "worker"
    finally:
        await pool.close()


async def test_message_times_read_right_whatever_date_style_the_database_has(
    database_dsn: str,
) -> None:
    """Message times travel as text: a database whose DateStyle is not ISO still gives the
    worker's connections ISO, so every message's time reads back as written."""
    from urllib.parse import urlsplit

    from worker import MessageStore, NewMessage

    admin = await asyncpg.connect(database_dsn)
    try:
        name = urlsplit(database_dsn).path.lstrip("/")
        await admin.execute(f"ALTER DATABASE \"{name}\" SET DateStyle = 'SQL, DMY'")
    finally:
        await admin.close()
    pool = await create_pool(database_dsn, min_size=1, max_size=1)
    try:
        store = MessageStore(pool)
        await store.write("clock-1", NewMessage("Ticked", {"n": 1}))
        (message,) = await store.read_stream("clock-1")
        written = await pool.fetchval("SELECT time FROM message_store.messages")
        assert message.time == written.replace(tzinfo=message.time.tzinfo)
        assert message.time.utcoffset() is not None
    finally:
        await pool.close()
