"""Test fixtures: a real PostgreSQL with the genuine MessageDB, a fresh database per test.

The server is the one ``WORKER_EVENT_STORE__DATABASE_URI`` names (its database part is ignored);
when none is named, an embedded PostgreSQL in ``.worker/test-postgres``. MessageDB is installed
once per session into a template database; each test gets ``CREATE DATABASE ... TEMPLATE``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest

from worker.ops.settings import MessageDBSettings
from worker.store.database import (
    create_pool,
    is_embedded,
    start_embedded,
    unavailable,
    with_database,
)
from worker.store.installer import install, quote_identifier
from worker.store.message_store import MessageStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

ROOT = Path(__file__).resolve().parent.parent
# One template per test session, so sessions on one server never drop each other's template.
TEMPLATE = f"worker_test_template_{os.getpid()}"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _server_dsn() -> str:
    named = os.environ.get("WORKER_EVENT_STORE__DATABASE_URI")
    if not is_embedded(named):
        assert named is not None
        return with_database(named, "postgres")
    return start_embedded(ROOT / ".worker" / "test-postgres", "postgres")


async def _admin(dsn: str, *statements: str) -> None:
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as error:
        raise unavailable(dsn, error) from error
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _drop_orphans(dsn: str) -> None:
    """Drop databases left by test sessions that were killed (their process is gone)."""
    conn = await asyncpg.connect(dsn)
    try:
        names = [
            r[0]
            for r in await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'worker\\_test\\_template\\_%'"
                " OR datname ~ '^wt_[0-9]+_[0-9a-f]+$'"
            )
        ]
    finally:
        await conn.close()
    for name in names:
        pid = name.rsplit("_", 1)[1] if name.startswith("worker_") else name.split("_")[1]
        if pid.isdigit() and not _alive(int(pid)):
            await _admin(dsn, f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)")


@pytest.fixture(scope="session")
def server_dsn() -> str:
    """DSN of the test server's ``postgres`` database."""
    return _server_dsn()


@pytest.fixture(scope="session")
def template_dsn(server_dsn: str) -> Iterator[str]:
    """A template database with MessageDB and the worker schema installed, made once."""
    name = quote_identifier(TEMPLATE)

    async def build() -> None:
        await _drop_orphans(server_dsn)
        await _admin(server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await install(with_database(server_dsn, TEMPLATE), MessageDBSettings())

    anyio.run(build)
    yield with_database(server_dsn, TEMPLATE)
    anyio.run(_admin, server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_dsn(server_dsn: str, template_dsn: str) -> Iterator[str]:
    """A fresh database for this test, copied from the template; dropped afterwards."""
    name = f"wt_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    anyio.run(_admin, server_dsn, f"CREATE DATABASE {name} TEMPLATE {quote_identifier(TEMPLATE)}")
    yield with_database(server_dsn, name)
    anyio.run(_admin, server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def admin(dsn: str, *statements: str) -> None:
    """Run ``statements`` on ``dsn`` as the test server's superuser."""
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def role(database_dsn: str) -> Iterator[str]:
    """A role that may log in and holds no rights; dropped (with its grants) afterwards."""
    name = f"wt_role_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    anyio.run(admin, database_dsn, f"CREATE ROLE {name} LOGIN")
    try:
        yield name
    finally:
        anyio.run(admin, database_dsn, f"DROP OWNED BY {name}", f"DROP ROLE {name}")


@pytest.fixture
async def pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await create_pool(database_dsn, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def store(pool: asyncpg.Pool[Any]) -> MessageStore:
    return MessageStore(pool)
