"""Every way a command can fail to start on the database ends in one line on stderr, exit 1,
and never the password of the DSN."""

from __future__ import annotations

import struct
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest

from tests.cli import EXAMPLE_APP, as_user, worker
from worker.store.database import with_database

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import SocketStream

pytestmark = pytest.mark.anyio

PASSWORD = "pw-Zq81x"


def one_line(result: Any, *expected: str) -> str:
    """The command failed with exit 1 and one line on stderr holding ``expected``."""
    assert result.code == 1, result
    assert len(result.errors) == 1, result
    line: str = result.errors[0]
    for text in expected:
        assert text in line, result
    assert PASSWORD not in result.stdout + result.stderr, result
    return line


# -- a server that is still starting up ------------------------------------------------------

_SSL_REQUEST, _GSS_REQUEST = 80877103, 80877104


def _error_response(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        code + value.encode() + b"\0"
        for code, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


async def _receive_exactly(stream: SocketStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += await stream.receive(size - len(data))
    return data


class StartingServer:
    """Speaks just enough of the PostgreSQL protocol to refuse every startup packet the way a
    server does while it starts up (SQLSTATE 57P03), counting the attempts."""

    def __init__(self) -> None:
        self.attempts = 0

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            while True:
                length, code = struct.unpack("!ii", await _receive_exactly(stream, 8))
                if code in (_SSL_REQUEST, _GSS_REQUEST):
                    await stream.send(b"N")  # no encryption: go on in plain text
                    continue
                await _receive_exactly(stream, length - 8)  # the startup message's parameters
                self.attempts += 1
                await stream.send(_error_response("57P03", "the database system is starting up"))
                return


@pytest.fixture
async def starting_server() -> AsyncIterator[tuple[StartingServer, int]]:
    server = StartingServer()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        yield server, port
        tg.cancel_scope.cancel()


async def test_server_starting_up_is_retried_until_connect_timeout_then_one_line(
    starting_server: tuple[StartingServer, int],
) -> None:
    """A server that answers "the database system is starting up" is tried again with backoff
    until [event_store] connect_timeout has passed; then one line says so."""
    server, port = starting_server
    dsn = f"postgresql://worker:{PASSWORD}@127.0.0.1:{port}/shop"
    result = await worker(dsn, "status", WORKER_EVENT_STORE__CONNECT_TIMEOUT="1.5")
    one_line(result, "still not accepting connections after 1.5 s", "starting up", "***")
    assert server.attempts >= 2, f"{server.attempts} attempt(s)\n{result}"


# -- the database, the DSN, the login ----------------------------------------------------------


async def test_missing_database_is_one_line(server_dsn: str) -> None:
    """A database that does not exist is named, with what to do."""
    name = f"wt_missing_{uuid.uuid4().hex[:8]}"
    dsn = as_user(with_database(server_dsn, name), "postgres", PASSWORD)
    result = await worker(dsn, "status")
    one_line(result, f'database "{name}" does not exist', "worker db install")


async def test_non_numeric_port_is_one_line() -> None:
    """A DSN whose port is no number is a configuration error naming the port."""
    result = await worker(f"postgresql://u:{PASSWORD}@127.0.0.1:5432x/shop", "status")
    one_line(result, "event_store.database_uri", "port '5432x' is not a number")


async def test_unknown_role_is_one_line_without_the_password(database_dsn: str) -> None:
    """A login PostgreSQL refuses (here: no such role; the test server trusts any password)
    says so and never prints the password."""
    dsn = as_user(database_dsn, "wt_nobody", PASSWORD)
    result = await worker(dsn, "status")
    one_line(result, "refused the login", 'role "wt_nobody" does not exist', "wt_nobody:***@")


# -- a role without the rights the worker needs ------------------------------------------------


async def test_role_without_rights_is_told_the_missing_right(database_dsn: str, role: str) -> None:
    """A role with no rights on MessageDB's schema gets one line naming the right it lacks and
    the README section on roles."""
    result = await worker(as_user(database_dsn, role, PASSWORD), "status")
    one_line(
        result,
        f'role "{role}" lacks USAGE on schema message_store',
        '"Database roles" in the README',
    )


async def test_a_runtime_role_is_told_to_install_first_then_runs(
    database_dsn: str, role: str
) -> None:
    """A runtime role (`worker db grant`) creates nothing: while the projector's setup has not
    run in the database, `worker run` says to run `worker db install` with the owner role;
    once the owner has, the runtime role runs the worker to the end on the owner's tables."""
    granted = await worker(database_dsn, "db", "grant", role)
    assert granted.code == 0, granted
    dsn = as_user(database_dsn, role, PASSWORD)
    result = await worker(dsn, "run", "--until-caught-up")
    one_line(
        result,
        "projector 'balances' has a setup(conn) that has not run in this database",
        f'role "{role}" may not create tables in schema "public"',
        "run `worker db install` with the owner role",
    )

    installed = await worker(database_dsn, "db", "install")
    assert installed.code == 0, installed
    assert f"runtime roles granted again: {role}" in installed.stdout, installed
    result = await worker(dsn, "run", "--until-caught-up")
    assert result.code == 0, result
    conn = await asyncpg.connect(database_dsn)
    try:
        owner = await conn.fetchval(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename = 'balances'"
        )
    finally:
        await conn.close()
    assert owner == "postgres"


async def test_a_rebuild_by_the_runtime_role_is_one_line_naming_the_owner_role(
    database_dsn: str, role: str
) -> None:
    """A rebuild creates, replaces and drops tables (or empties them, in place): the runtime
    role is told in one line that it needs the owner role, and nothing changes."""
    for args in (("db", "install"), ("db", "grant", role)):
        done = await worker(database_dsn, *args, config=EXAMPLE_APP)
        assert done.code == 0, done
    dsn = as_user(database_dsn, role, PASSWORD)
    blue_green = await worker(dsn, "rebuild", "order_summary", config=EXAMPLE_APP)
    assert blue_green.stdout == "", blue_green  # refused before any progress is shown
    one_line(
        blue_green,
        "`worker rebuild order_summary` needs the owner role",
        f'role "{role}" lacks CREATE on schema public',
        '"Database roles" in the README',
    )
    in_place = await worker(dsn, "rebuild", "order_summary", "--in-place", config=EXAMPLE_APP)
    one_line(
        in_place,
        "`worker rebuild order_summary --in-place` needs the owner role",
        'lacks TRUNCATE on "order_summary__g1"',
    )
