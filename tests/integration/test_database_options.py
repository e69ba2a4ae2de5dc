"""How to connect is one value, ``Database`` (DSN, connect timeout, read-model schema,
keepalive), made from the settings and handed to whatever opens connections: every connection
of a run gets its schema and timeout, and two applications in one process keep their own."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest

from tests.integration.test_engine import FAST
from tests.integration.test_missing_rows import counting
from worker import (
    App,
    ConfigurationError,
    Database,
    DatabaseUnavailableError,
    Domain,
    NewMessage,
    Runner,
    connect,
    create_pool,
)
from worker.engine.lease import Lease
from worker.engine.wakeups import Listener, Waker
from worker.ops.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from worker import MessageStore

pytestmark = pytest.mark.anyio


class Opened:
    """What the spies saw: (DSN, server settings, timeout) of every connection and pool."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], float]] = []

    def schemas(self) -> set[str]:
        return {settings["search_path"].split(",")[0] for _, settings, _ in self.calls}

    def timeouts(self) -> set[float]:
        # a single connection is given what is left of the timeout when it is tried
        return {round(timeout, 1) for _, _, timeout in self.calls}


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Opened:
    """Record every ``asyncpg.connect`` and ``asyncpg.create_pool`` the worker makes (the real
    ones still run)."""
    seen = Opened()
    real_connect, real_pool = asyncpg.connect, asyncpg.create_pool

    async def connect_spy(dsn: str, **options: Any) -> Any:
        seen.calls.append((dsn, options["server_settings"], options["timeout"]))
        return await real_connect(dsn, **options)

    def pool_spy(dsn: str, **options: Any) -> Any:
        seen.calls.append((dsn, options["server_settings"], options["timeout"]))
        return real_pool(dsn, **options)

    monkeypatch.setattr(asyncpg, "connect", connect_spy)
    monkeypatch.setattr(asyncpg, "create_pool", pool_spy)
    return seen


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A DSN of a TCP port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"postgresql://postgres@127.0.0.1:{listener.getsockname()[1]}/postgres"


async def test_every_connection_of_a_run_gets_the_schema_and_timeout(
    store: MessageStore, database_dsn: str, opened: Opened
) -> None:
    """A runner given a ``Database`` opens its pool and its leases with that database's
    read-model schema and connect timeout."""
    await store.write("tally-a", NewMessage("Opened", {"name": "a"}))
    settings = FAST.model_copy(update={"read_model_schema": "reporting"})
    database = Database(database_dsn, connect_timeout=7.5, read_model_schema="reporting")
    await Runner(counting(), database, settings).run(until_caught_up=True, handle_signals=False)
    assert len(opened.calls) >= 2, opened.calls  # the pool and at least one lease
    assert (opened.schemas(), opened.timeouts()) == ({'"reporting"'}, {7.5}), opened.calls


async def test_the_listener_connects_as_its_database_says(
    database_dsn: str, opened: Opened
) -> None:
    """The LISTEN connection takes the ``Database``'s schema and timeout."""
    database = Database(database_dsn, connect_timeout=6.5, read_model_schema="reporting")
    async with anyio.create_task_group() as tg:
        await tg.start(Listener(database, Waker()).run)
        tg.cancel_scope.cancel()
    assert (opened.schemas(), opened.timeouts()) == ({'"reporting"'}, {6.5}), opened.calls


@pytest.mark.parametrize("opener", ["connect", "create_pool", "lease"])
async def test_a_server_that_does_not_answer_fails_within_the_timeout(
    silent_server: str, opener: str
) -> None:
    """A connection to a server that never answers fails with one line once the
    ``Database``'s connect timeout has passed, whatever opens it."""
    database = Database(silent_server, connect_timeout=0.3)
    started = anyio.current_time()
    with anyio.fail_after(5), pytest.raises(DatabaseUnavailableError, match="cannot connect"):
        if opener == "connect":
            await connect(database)
        elif opener == "create_pool":
            await create_pool(database)
        else:
            await Lease(database, "probe").try_acquire()
    assert anyio.current_time() - started < 3


async def test_two_apps_in_one_process_keep_their_own_schema(database_dsn: str) -> None:
    """Two applications with different read-model schemas, opened one after the other, each
    connect with their own: no setting is shared through the process."""
    apps = [
        App(
            load_settings(None, worker={"read_model_schema": schema}),
            Domain(schema),
            database_dsn,
        )
        for schema in ("alpha", "beta")
    ]
    for app in apps:
        pool = await app.pool()
        try:
            schema = app.settings.worker.read_model_schema
            assert await pool.fetchval("SHOW search_path") == f'"{schema}", message_store'
            assert app.database == Database(database_dsn, 10.0, schema)
        finally:
            await pool.close()


async def test_a_runner_refuses_a_database_with_another_schema(database_dsn: str) -> None:
    """A ``Database`` whose read-model schema is not the settings' is refused at once, with
    one line naming both."""
    database = Database(database_dsn, read_model_schema="reporting")
    with pytest.raises(ConfigurationError, match=r"'reporting'.*'public'"):
        Runner(Domain("x"), database, FAST)


def test_a_bare_dsn_stands_for_a_database_with_the_defaults() -> None:
    """``Database.of`` turns a DSN into the default options and keeps a ``Database``."""
    database = Database.of("postgresql://u@h/db")
    assert database == Database("postgresql://u@h/db", 10.0, "public")
    assert Database.of(database) is database
    assert database.at("postgres").dsn == "postgresql://u@h/postgres"
    assert database.name == "db"
