"""The worker's own schema (``worker``): its versioned migrations, and the NOTIFY trigger.

Migrations are the ``NNNN_name.sql`` files of ``worker/store/migrations``, applied in order in
one transaction and recorded in ``worker.migrations``. The worker's only additions to
MessageDB are on its table: the NOTIFY trigger (which can be left out) and the partial indexes
that find what a message caused (migration 0007).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import TYPE_CHECKING, Any

from worker.store import queries as q

if TYPE_CHECKING:
    import asyncpg

    from worker.store.types import Connection


# The migration that indexes MessageDB's table for causation (only its owner may).
CAUSATION_INDEXES = 7


def migrations() -> list[tuple[int, str, str]]:
    """The worker schema's migrations: (version, name, sql), in version order."""
    found = []
    for entry in resources.files("worker.store.migrations").iterdir():
        match = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text()))
    return sorted(found)


async def migrate(conn: asyncpg.Connection[Any]) -> tuple[str, ...]:
    """Apply the worker schema's pending migrations in one transaction; return their names."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute(q.INSTALL_LOCK, q.INSTALL_LOCK_KEY)
        if await conn.fetchval(q.WORKER_SCHEMA_EXISTS) is None:
            await conn.execute(q.CREATE_WORKER_SCHEMA)
        await conn.execute(q.MIGRATIONS_TABLE)
        done = {row["version"] for row in await conn.fetch(q.APPLIED_MIGRATIONS)}
        for version, name, sql in migrations():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute(q.RECORD_MIGRATION, version, name)
            applied.append(f"{version:04d}_{name}")
    return tuple(applied)


async def set_notify_trigger(conn: Connection, enabled: bool) -> bool:
    """Add or remove the NOTIFY trigger on MessageDB's table; True when something changed."""
    async with conn.transaction():
        await conn.execute(q.INSTALL_LOCK, q.INSTALL_LOCK_KEY)
        if await conn.fetchval(q.TRIGGER_EXISTS) == enabled:
            return False
        await conn.execute(q.CREATE_TRIGGER if enabled else q.DROP_TRIGGER)
    return True


async def pending_migrations(conn: Connection) -> set[int]:
    """The versions of the migrations ``migrate`` would apply (every one before the first)."""
    every = {version for version, _, _ in migrations()}
    if await conn.fetchval(q.MIGRATIONS_EXIST) is None:
        return every
    return every - {row["version"] for row in await conn.fetch(q.APPLIED_MIGRATIONS)}


async def schema_version(conn: Connection) -> int:
    """The newest migration applied (0 before the first)."""
    if await conn.fetchval(q.MIGRATIONS_EXIST) is None:
        return 0
    version: int = await conn.fetchval(q.SCHEMA_VERSION)
    return version
