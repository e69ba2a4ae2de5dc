"""Installs that run at the same time (init containers of several replicas) all succeed: one
installs, the others wait for it and find everything in place; MessageDB is installed once."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.cli import EXAMPLE_APP, Result, worker
from tests.conftest import admin
from worker.ops.settings import MessageDBSettings
from worker.store.database import with_database
from worker.store.installer import InstallReport, install

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

INSTALLS = 3


@pytest.fixture
async def fresh_name(server_dsn: str) -> AsyncIterator[str]:
    """A database name nobody uses yet; the database is dropped afterwards."""
    name = f"wci_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        await admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def installed_together(dsn: str) -> list[InstallReport]:
    reports: list[InstallReport] = []

    async def one() -> None:
        reports.append(await install(dsn, MessageDBSettings()))

    async with anyio.create_task_group() as tg:
        for _ in range(INSTALLS):
            tg.start_soon(one)
    return reports


async def cli_installs_together(dsn: str) -> list[Result]:
    results: list[Result] = []

    async def one() -> None:
        results.append(await worker(dsn, "db", "install", config=EXAMPLE_APP))

    async with anyio.create_task_group() as tg:
        for _ in range(INSTALLS):
            tg.start_soon(one)
    return results


def check_installed_once(results: list[Result]) -> None:
    for result in results:
        assert result.code == 0, result
        assert not [line for line in result.errors if not line.startswith("{")], result
    said = [r for r in results if "MessageDB @eventide/message-db" in r.stdout]
    assert len(said) == 1, "\n".join(map(str, results))
    waited = [r for r in results if "MessageDB already installed" in r.stdout]
    assert len(waited) == INSTALLS - 1, "\n".join(map(str, results))


async def test_concurrent_installs_into_a_new_database_install_once(
    server_dsn: str, template_dsn: str, fresh_name: str
) -> None:
    """Three installs on separate connections, the database not there yet: all succeed, and
    exactly one reports having installed MessageDB."""
    reports = await installed_together(with_database(server_dsn, fresh_name))
    assert len(reports) == INSTALLS
    assert sum(report.message_db_installed for report in reports) == 1, reports
    assert sum(bool(report.migrations_applied) for report in reports) == 1, reports


async def test_concurrent_cli_installs_create_the_database_once(
    server_dsn: str, template_dsn: str, fresh_name: str
) -> None:
    """Three ``worker db install`` processes at once, the database not there yet: all exit 0
    with no error line; one installs, two find MessageDB installed."""
    check_installed_once(await cli_installs_together(with_database(server_dsn, fresh_name)))


async def test_concurrent_cli_installs_into_an_empty_database(
    server_dsn: str, template_dsn: str, fresh_name: str
) -> None:
    """Three ``worker db install`` processes at once into an existing empty database (with
    the example's read models): all exit 0; one installs, two find MessageDB installed."""
    await admin(server_dsn, f'CREATE DATABASE "{fresh_name}"')
    check_installed_once(await cli_installs_together(with_database(server_dsn, fresh_name)))
