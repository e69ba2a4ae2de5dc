"""Fixtures of the fault suite: a monitoring connection and worker processes that never outlive
their test."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.faults._support import Workers, connect

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import asyncpg


@pytest.fixture
async def monitor(database_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection of the test's own (not named 'worker', so never terminated by the test)."""
    conn = await connect(database_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def workers(database_dsn: str, tmp_path: Path) -> AsyncIterator[Workers]:
    """Starts worker processes on the test's database; any still running is killed at the end."""
    started = Workers(database_dsn, tmp_path, batch_size=200, shutdown_deadline=5)
    try:
        yield started
    finally:
        await started.kill_all()
