"""The ``worker`` pytest plugin: tests against a real PostgreSQL with the genuine MessageDB.

Installed with the package (entry point ``pytest11``), so a project that installs ``worker`` gets
these fixtures with no conftest of its own:

* ``worker_server_dsn`` (session): the server ``WORKER_EVENT_STORE__DATABASE_URI`` names, or an
  embedded PostgreSQL in ``.worker/test-postgres`` under the pytest root when none is named
  (stopped at the end of the session if the session started it);
* ``worker_template_dsn`` (session): a database with MessageDB and the worker schema installed
  once, as the template of every test's database;
* ``worker_dsn``: a fresh database for this test, copied from the template, dropped after;
* ``worker_pool``, ``worker_store``: a pool and a ``MessageStore`` on it;
* ``run_until_caught_up``: ``await run_until_caught_up(domain, *subscribers)`` runs the domain's
  projectors and handlers (or only those named) on the test's database until every one has
  handled its category up to the head, and returns the run's result.

Async fixtures run under anyio's pytest plugin (``@pytest.mark.anyio``).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest

from worker.engine.runner import Runner, RunResult
from worker.engine.settings import EngineSettings
from worker.store import embedded
from worker.store.database import (
    create_pool,
    database_name,
    is_embedded,
    start_embedded,
    unavailable,
)
from worker.store.database import with_database as database_of
from worker.store.installer import install, quote_identifier
from worker.store.message_store import MessageStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from worker.engine.subscriber import Subscriber, Subscriptions

# One template per test session, so sessions on one server never drop each other's template.
TEMPLATE_PREFIX = "worker_test_template_"
DATABASE_PREFIX = "wt_"

# Quick to notice new messages and to give up on a retry: tests wait on nothing longer.
TEST_SETTINGS = EngineSettings(
    poll_interval_min=0.01, poll_interval_max=0.05, retry_base_delay=0.001, retry_max_delay=0.01
)


class _MessageDBPackage:
    """The MessageDB release to install: the environment's ``WORKER_MESSAGE_DB__*`` or 1.3.1."""

    version = os.environ.get("WORKER_MESSAGE_DB__VERSION", "1.3.1")
    package_path = (
        Path(os.environ["WORKER_MESSAGE_DB__PACKAGE_PATH"])
        if os.environ.get("WORKER_MESSAGE_DB__PACKAGE_PATH")
        else None
    )
    cache_dir = None


async def admin(dsn: str, *statements: str) -> None:
    """Run statements on a connection of their own (no transaction: CREATE DATABASE)."""
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
            row[0]
            for row in await conn.fetch(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1) "
                "OR datname ~ ('^' || $2 || '[0-9]+_[0-9a-f]+$')",
                TEMPLATE_PREFIX,
                DATABASE_PREFIX,
            )
        ]
    finally:
        await conn.close()
    for name in names:
        pid = name.rsplit("_", 1)[1] if name.startswith(TEMPLATE_PREFIX) else name.split("_")[1]
        if pid.isdigit() and not _alive(int(pid)):
            await admin(dsn, f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)")


@pytest.fixture(scope="session")
def worker_server_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """DSN of the test server's ``postgres`` database (named, else embedded). An embedded
    server this session started is stopped when the session ends; one that was running
    already is left running."""
    named = os.environ.get("WORKER_EVENT_STORE__DATABASE_URI")
    if not is_embedded(named):
        assert named is not None
        yield database_of(named, "postgres")
        return
    folder = Path(request.config.rootpath) / ".worker" / "test-postgres"
    running_before = embedded.running(folder) is not None
    dsn = start_embedded(folder, "postgres")
    try:
        yield dsn
    finally:
        if not running_before:
            embedded.stop(folder)


@pytest.fixture(scope="session")
def worker_template_dsn(worker_server_dsn: str) -> Iterator[str]:
    """A template database with MessageDB and the worker schema installed, made once."""
    template = f"{TEMPLATE_PREFIX}{os.getpid()}"
    name = quote_identifier(template)

    async def build() -> None:
        await _drop_orphans(worker_server_dsn)
        await admin(worker_server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await install(database_of(worker_server_dsn, template), _MessageDBPackage())

    anyio.run(build)
    yield database_of(worker_server_dsn, template)
    anyio.run(admin, worker_server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def worker_dsn(worker_server_dsn: str, worker_template_dsn: str) -> Iterator[str]:
    """A fresh database for this test, copied from the template; dropped afterwards."""
    name = f"{DATABASE_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:12]}"
    template = quote_identifier(database_name(worker_template_dsn))
    anyio.run(admin, worker_server_dsn, f"CREATE DATABASE {name} TEMPLATE {template}")
    yield database_of(worker_server_dsn, name)
    anyio.run(admin, worker_server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def worker_pool(worker_dsn: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    """A pool on the test's database."""
    pool = await create_pool(worker_dsn, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def worker_store(worker_pool: asyncpg.Pool[Any]) -> MessageStore:
    """A ``MessageStore`` on the test's database."""
    return MessageStore(worker_pool)


class _Only:
    """A domain's subscribers, or only some of them."""

    def __init__(self, subscribers: tuple[Subscriber, ...]) -> None:
        self.subscribers = subscribers


@pytest.fixture
def run_until_caught_up(
    worker_dsn: str,
) -> Callable[..., Awaitable[RunResult]]:
    """``await run_until_caught_up(domain, *names_or_classes, settings=None)``: run the domain's
    projectors and handlers (or those named, by name or class) until each has caught up."""

    async def run(
        domain: Subscriptions, *only: str | type[Any], settings: EngineSettings | None = None
    ) -> RunResult:
        chosen = domain.subscribers
        if only:
            wanted = {o if isinstance(o, str) else o.__name__ for o in only}
            chosen = tuple(s for s in chosen if s.name in wanted or s.cls.__name__ in wanted)
            missing = wanted - {s.name for s in chosen} - {s.cls.__name__ for s in chosen}
            if missing:
                raise LookupError(f"no projector or handler named {sorted(missing)}")
        runner = Runner(_Only(chosen), worker_dsn, settings or TEST_SETTINGS)
        return await runner.run(until_caught_up=True, handle_signals=False)

    return run
