"""Installing the genuine MessageDB from its npm package, and the worker's own schema.

MessageDB's files (``worker.store.package`` finds them) are run in the order of its own
``install.sh``, through asyncpg, so ``psql`` is not needed; then the worker schema's migrations
(``worker.store.schema``).
"""

from __future__ import annotations

import contextlib
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from worker.errors import DatabaseMissingError, InstallError, PrivilegeError
from worker.store import privileges
from worker.store import queries as q
from worker.store.database import Database, connect, redact
from worker.store.package import PACKAGE, PackageSource, locate_package, package_release
from worker.store.read_schema import ROLES_HELP
from worker.store.schema import (
    CAUSATION_INDEXES,
    migrate,
    migrations,
    pending_migrations,
    schema_version,
    set_notify_trigger,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from worker.store.privileges import Right
    from worker.store.types import Connection

log = structlog.get_logger(__name__)

SUPPORTED_SERIES = "1.3."

# The order of MessageDB's install.sh and the install-*.sh scripts it sources.
_INSTALL_FILES = (
    "schema/message-store.sql",
    "tables/messages.sql",
    "types/message.sql",
    "functions/message-store-version.sql",
    "functions/hash-64.sql",
    "functions/acquire-lock.sql",
    "functions/category.sql",
    "functions/is-category.sql",
    "functions/id.sql",
    "functions/cardinal-id.sql",
    "functions/stream-version.sql",
    "functions/write-message.sql",
    "functions/get-stream-messages.sql",
    "functions/get-category-messages.sql",
    "functions/get-last-stream-message.sql",
    "indexes/messages-id.sql",
    "indexes/messages-stream.sql",
    "indexes/messages-category.sql",
    "views/stream-summary.sql",
    "views/type-summary.sql",
    "views/stream-type-summary.sql",
    "views/type-stream-summary.sql",
    "views/category-type-summary.sql",
    "views/type-category-summary.sql",
    "privileges/schema.sql",
    "privileges/table.sql",
    "privileges/sequence.sql",
    "privileges/functions.sql",
    "privileges/views.sql",
)
_ROLE_FILE = "roles/message-store.sql"
_EXTENSION_FILE = "extensions/pgcrypto.sql"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class InstallReport:
    """What ``install`` found and did."""

    database: str
    message_db_version: str
    message_db_installed: bool
    migrations_applied: tuple[str, ...]
    package_release: str | None = None  # the npm package's release, when installed just now

    def describe(self) -> str:
        """What happened to MessageDB, as one line: the package release (when this run installed
        it) and what its ``message_store_version()`` reports (1.3.1 reports 1.3.0)."""
        reported = f"message_store_version() reports {self.message_db_version}"
        if not self.message_db_installed:
            return f"MessageDB already installed in database {self.database} ({reported})"
        release = f"{PACKAGE}@{self.package_release}" if self.package_release else PACKAGE
        return f"MessageDB {release} installed in database {self.database} ({reported})"


# -- installing ----------------------------------------------------------------------------


def quote_identifier(name: str) -> str:
    """Quote a plain SQL identifier after checking it is one (letters, digits, underscore)."""
    if not _IDENTIFIER.match(name):
        raise InstallError(f"{name!r} is not a plain database name (letters, digits, underscore)")
    return f'"{name}"'


async def ensure_database(dsn: str | Database) -> bool:
    """Create the DSN's database if it does not exist; True when it was created."""
    try:
        conn = await connect(dsn)
    except DatabaseMissingError:
        pass
    else:
        await conn.close()
        return False
    name = Database.of(dsn).name
    admin = await connect(Database.of(dsn).at("postgres"))
    try:
        await admin.execute(q.create_database(quote_identifier(name)))
    # Created by another install meanwhile: DuplicateDatabase once it has committed, the unique
    # index's violation while both were creating it.
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        return False
    except asyncpg.PostgresError as error:
        raise InstallError(f"cannot create database {name}: {error}") from error
    finally:
        await admin.close()
    log.info("created database", database=name)
    return True


@asynccontextmanager
async def install_lock(conn: asyncpg.Connection[Any]) -> AsyncIterator[None]:
    """Hold the database's install lock on ``conn`` while the block runs: a concurrent install
    waits here until this one is done, then finds everything in place."""
    await conn.execute(q.INSTALL_SESSION_LOCK, q.INSTALL_LOCK_KEY)
    try:
        yield
    finally:
        if not conn.is_closed():  # a closed session has released it already
            await conn.execute(q.INSTALL_SESSION_UNLOCK, q.INSTALL_LOCK_KEY)


async def installed_version(conn: Connection) -> str | None:
    """MessageDB's reported version in this database, or ``None`` when it is not installed."""
    if not await conn.fetchval(q.MESSAGE_DB_PRESENT):
        return None
    version: str = await conn.fetchval(q.MESSAGE_DB_VERSION)
    return version


async def _create_role(conn: asyncpg.Connection[Any], folder: Path) -> None:
    # UniqueViolation: created concurrently by another install on the same server.
    with contextlib.suppress(asyncpg.UniqueViolationError):
        await conn.execute((folder / _ROLE_FILE).read_text())


async def _create_extension(conn: asyncpg.Connection[Any], folder: Path) -> None:
    """pgcrypto is only there for gen_random_uuid(), built into PostgreSQL 13 and later."""
    try:
        async with conn.transaction():
            await conn.execute((folder / _EXTENSION_FILE).read_text())
    except asyncpg.PostgresError as error:
        if conn.get_server_version().major < 13:
            raise InstallError(
                f"cannot create the pgcrypto extension MessageDB needs: {error}"
            ) from error
        log.info("pgcrypto unavailable; gen_random_uuid() is built in", reason=str(error))


async def _install_message_db(conn: asyncpg.Connection[Any], folder: Path) -> None:
    await _create_role(conn, folder)
    async with conn.transaction():
        await conn.execute(q.INSTALL_LOCK, q.INSTALL_LOCK_KEY)
        if await installed_version(conn) is not None:
            return
        await conn.execute((folder / "schema/message-store.sql").read_text())
        await _create_extension(conn, folder)
        for name in _INSTALL_FILES:
            try:
                await conn.execute((folder / name).read_text())
            except asyncpg.PostgresError as error:
                raise InstallError(f"MessageDB install step {name} failed: {error}") from error


@dataclass(frozen=True)
class Plan:
    """What ``install`` found before changing anything."""

    database_exists: bool
    message_db_version: str | None  # None: MessageDB is to be installed
    package: Path | None  # MessageDB's scripts, when it is to be installed


def _refuse(role: str, lacking: list[str]) -> None:
    if lacking:
        raise PrivilegeError(
            f'role "{role}" cannot run `worker db install` here: it lacks {"; ".join(lacking)} '
            f"({ROLES_HELP})"
        )


async def _plan_new_database(dsn: str | Database, settings: PackageSource) -> Plan:
    """The database does not exist: the role must be able to create it (and MessageDB's role)."""
    admin = await connect(Database.of(dsn).at("postgres"))
    try:
        row = await admin.fetchrow(q.NEW_DATABASE_RIGHTS)
    finally:
        await admin.close()
    assert row is not None
    lacking = []
    if not row["create_database"]:
        lacking.append(f'CREATEDB (database "{Database.of(dsn).name}" does not exist)')
    if not row["message_store_role"]:
        lacking.append("CREATEROLE (MessageDB's install creates role message_store)")
    _refuse(row["role"], lacking)
    return Plan(False, None, locate_package(settings))


async def plan(
    dsn: str | Database,
    settings: PackageSource,
    *,
    notify_trigger: bool = True,
    read_model_schema: str | None = None,
) -> Plan:
    """Check every prerequisite of ``install`` without changing anything, and raise one error
    naming what fails: the server must answer; the database exist or the role may create it;
    MessageDB be installed, or its package be found (``package_path``, or npm) and the role may
    install it; the role may migrate the worker schema, set the NOTIFY trigger and, with
    ``read_model_schema``, create read-model tables there."""
    try:
        conn = await connect(dsn)
    except DatabaseMissingError:
        return await _plan_new_database(dsn, settings)
    try:
        row = await conn.fetchrow(q.INSTALL_RIGHTS, read_model_schema)
        assert row is not None
        version = await installed_version(conn)
        if version is not None and not version.startswith(SUPPORTED_SERIES):
            raise InstallError(
                f"MessageDB {version} found in {Database.of(dsn).name}; this worker needs "
                f"{SUPPORTED_SERIES}x"
            )
        pending = await pending_migrations(conn)
        migrating, indexing = bool(pending), CAUSATION_INDEXES in pending
        trigger_change = (
            notify_trigger
            if version is None
            else await conn.fetchval(q.TRIGGER_EXISTS) != notify_trigger
        )
    finally:
        await conn.close()
    _refuse(
        row["role"],
        _lacking(row, version is None, migrating, trigger_change, read_model_schema)
        + _lacking_owner(row, indexing),
    )
    package = locate_package(settings) if version is None else None
    return Plan(True, version, package)


def _lacking_owner(row: Any, indexing: bool) -> list[str]:
    """Ownership of MessageDB's table, when the migration that indexes it is pending (an
    index, unlike the NOTIFY trigger, can be created by the table's owner only)."""
    if indexing and row["owns_messages"] is False:
        return ["ownership of message_store.messages (to create the causation indexes)"]
    return []


def _lacking(
    row: Any, installing: bool, migrating: bool, trigger_change: bool, read_model_schema: str | None
) -> list[str]:
    """The rights an install of this database needs that the role (``row``) lacks."""
    database = row["database"]
    lacking = []
    if installing and not row["create_in_database"]:
        lacking.append(f'CREATE on database "{database}" (to install MessageDB)')
    if installing and not row["message_store_role"]:
        lacking.append("CREATEROLE (MessageDB's install creates role message_store)")
    if migrating and row["owns_worker"] is None and not row["create_in_database"]:
        lacking.append(f'CREATE on database "{database}" (to create schema worker)')
    if migrating and row["owns_worker"] is False:
        lacking.append("ownership of schema worker (to migrate it)")
    if trigger_change and row["trigger_right"] is False:
        lacking.append("TRIGGER on message_store.messages (the NOTIFY trigger)")
    if read_model_schema is not None:
        if row["create_in_read_schema"] is None and not row["create_in_database"]:
            lacking.append(
                f'CREATE on database "{database}" (to create schema "{read_model_schema}")'
            )
        if row["create_in_read_schema"] is False:
            lacking.append(f'CREATE on schema "{read_model_schema}" (for read-model tables)')
    return lacking


async def install(
    dsn: str | Database,
    settings: PackageSource,
    *,
    notify_trigger: bool = True,
    read_model_schema: str | None = None,
) -> InstallReport:
    """Install MessageDB (unless present) and the worker schema; verify the version.

    Every prerequisite is checked first (``plan``), so a missing package or right changes
    nothing. Idempotent: a second run finds both in place and changes nothing.
    """
    found = await plan(
        dsn, settings, notify_trigger=notify_trigger, read_model_schema=read_model_schema
    )
    if not found.database_exists:
        await ensure_database(dsn)
    conn = await connect(dsn)
    try:
        async with install_lock(conn):
            return await _install_locked(conn, dsn, settings, found, notify_trigger)
    finally:
        await conn.close()


async def _install_locked(
    conn: asyncpg.Connection[Any],
    dsn: str | Database,
    settings: PackageSource,
    found: Plan,
    notify_trigger: bool,
) -> InstallReport:
    """``install``'s changes, under the install lock (so ``before`` is what this run found)."""
    release = None
    before = await installed_version(conn)
    if before is None:
        folder = found.package or locate_package(settings)
        release = package_release(folder)
        log.info("installing MessageDB", database=redact(Database.of(dsn).dsn), package=str(folder))
        await _install_message_db(conn, folder)
    version = await installed_version(conn)
    if version is None or not version.startswith(SUPPORTED_SERIES):
        raise InstallError(
            f"MessageDB {version} found in {Database.of(dsn).name}; this worker needs "
            f"{SUPPORTED_SERIES}x"
        )
    applied = await migrate(conn)
    if await set_notify_trigger(conn, notify_trigger):
        applied += ("notify trigger " + ("added" if notify_trigger else "removed"),)
    return InstallReport(Database.of(dsn).name, version, before is None, applied, release)


async def check_installed(
    conn: Connection, rights: tuple[Right, ...] = privileges.WRITE, *, worker_schema: bool = True
) -> None:
    """Raise one clear ``InstallError`` unless MessageDB and (``worker_schema``) the current
    worker schema are there, or one ``PrivilegeError`` when the role lacks any of ``rights``."""
    if not await conn.fetchval(q.MESSAGE_DB_PRESENT):
        raise InstallError("MessageDB is not installed in this database: run `worker db install`")
    await privileges.check(conn, rights)
    if not worker_schema:
        return
    latest = max(version for version, _, _ in migrations())
    current = await schema_version(conn)
    if current < latest:
        raise InstallError(
            f"the worker schema is at version {current}, this worker needs {latest}: "
            "run `worker db install`"
        )
