"""Test fixtures: the package's own pytest plugin (``worker.testing.plugin``), under the
names the project's tests use.

The server is the one ``WORKER_EVENT_STORE__DATABASE_URI`` names (its database part is ignored);
when none is named, an embedded PostgreSQL in ``.worker/test-postgres``. MessageDB is installed
once per session into a template database; each test gets ``CREATE DATABASE ... TEMPLATE``.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from worker.store.message_store import MessageStore


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def server_dsn(worker_server_dsn: str) -> str:
    """DSN of the test server's ``postgres`` database."""
    return worker_server_dsn


@pytest.fixture(scope="session")
def template_dsn(worker_template_dsn: str) -> str:
    """A template database with MessageDB and the worker schema installed, made once."""
    return worker_template_dsn


@pytest.fixture
def database_dsn(worker_dsn: str) -> str:
    """A fresh database for this test, copied from the template; dropped afterwards."""
    return worker_dsn


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
def pool(worker_pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    return worker_pool


@pytest.fixture
def store(worker_store: MessageStore) -> MessageStore:
    return worker_store
