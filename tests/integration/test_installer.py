"""`worker db install`: the genuine MessageDB from npm, idempotent, with clear failures."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from tests.cli import as_user
from tests.conftest import admin
from worker import InstallError
from worker.ops.settings import MessageDBSettings
from worker.store.database import database_name, with_database
from worker.store.installer import install
from worker.store.package import locate_package

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.anyio

_SCHEMA_SNAPSHOT = """
SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('message_store', 'worker')
UNION ALL
SELECT n.nspname, p.proname || '/' || md5(p.prosrc), 'f' FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname IN ('message_store', 'worker')
ORDER BY 1, 2
"""


async def snapshot(dsn: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(_SCHEMA_SNAPSHOT)
        version = await conn.fetchval("SELECT message_store.message_store_version()")
        return [tuple(r) for r in rows] + [version]
    finally:
        await conn.close()


async def test_install_is_idempotent(server_dsn: str, template_dsn: str) -> None:
    """A second install finds everything in place and changes nothing."""
    dsn = with_database(server_dsn, f"wi_{uuid.uuid4().hex[:12]}")
    try:
        first = await install(dsn, MessageDBSettings())
        assert first.message_db_installed and first.message_db_version.startswith("1.3.")
        assert first.migrations_applied
        before = await snapshot(dsn)
        second = await install(dsn, MessageDBSettings())
        assert not second.message_db_installed and second.migrations_applied == ()
        assert await snapshot(dsn) == before
    finally:
        conn = await asyncpg.connect(server_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{database_name(dsn)}" WITH (FORCE)')
        await conn.close()


def test_missing_npm_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InstallError, match=r"npm is not installed.*PACKAGE_PATH"):
        locate_package(MessageDBSettings(cache_dir=tmp_path / "cache"))


def test_package_path_is_used_and_checked(tmp_path: Path) -> None:
    real = locate_package(MessageDBSettings())
    assert locate_package(MessageDBSettings(package_path=real.parent)) == real
    with pytest.raises(InstallError, match="not an unpacked @eventide/message-db"):
        locate_package(MessageDBSettings(package_path=tmp_path))


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=60,
        check=False,
    )


def test_unreachable_server_is_one_line_without_password() -> None:
    """A named server that is down fails with one line; no silent switch to embedded."""
    result = run_cli(
        "db", "install", WORKER_EVENT_STORE__DATABASE_URI="postgresql://u:hunter2@127.0.0.1:1/x"
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot connect to PostgreSQL at postgresql://u:***@127.0.0.1:1/x" in lines[0]
    assert "hunter2" not in result.stderr + result.stdout


def test_cli_install_twice_against_named_server(server_dsn: str, template_dsn: str) -> None:
    name = f"wc_{uuid.uuid4().hex[:12]}"
    dsn = with_database(server_dsn, name)
    try:
        first = run_cli("db", "install", WORKER_EVENT_STORE__DATABASE_URI=dsn)
        assert first.returncode == 0, first.stderr
        # The package release configured, and what its message_store_version() reports.
        assert (
            f"MessageDB @eventide/message-db@1.3.1 installed in database {name} "
            "(message_store_version() reports 1.3.0)"
        ) in first.stdout
        second = run_cli("db", "install", WORKER_EVENT_STORE__DATABASE_URI=dsn)
        assert second.returncode == 0, second.stderr
        assert (
            f"MessageDB already installed in database {name} "
            "(message_store_version() reports 1.3.0)"
        ) in second.stdout
        assert "up to date" in second.stdout
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(server_dsn)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()

        anyio.run(drop)


async def _databases(server_dsn: str, name: str) -> int:
    conn = await asyncpg.connect(server_dsn)
    try:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = $1", name
        )
        return found
    finally:
        await conn.close()


def test_install_looks_for_the_package_before_creating_the_database(
    server_dsn: str, template_dsn: str, tmp_path: Path
) -> None:
    """Without npm and without a package path, `worker db install` says so in one line and
    creates no database."""
    name = f"wn_{uuid.uuid4().hex[:12]}"
    result = run_cli(
        "db",
        "install",
        WORKER_EVENT_STORE__DATABASE_URI=with_database(server_dsn, name),
        WORKER_MESSAGE_DB__CACHE_DIR=str(tmp_path / "cache"),
        PATH=str(tmp_path),
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "npm is not installed" in lines[0], result.stderr
    assert anyio.run(_databases, server_dsn, name) == 0


def test_install_without_the_rights_changes_nothing(
    server_dsn: str, template_dsn: str, database_dsn: str, role: str
) -> None:
    """A role that may not create the database, or may not create schemas in an empty one, is
    told in one line what it lacks, before anything is created."""
    missing = f"wn_{uuid.uuid4().hex[:12]}"
    result = run_cli(
        "db",
        "install",
        WORKER_EVENT_STORE__DATABASE_URI=as_user(with_database(server_dsn, missing), role),
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f'role "{role}" cannot run `worker db install` here: it lacks CREATEDB' in lines[0]
    assert anyio.run(_databases, server_dsn, missing) == 0

    empty = f"wn_{uuid.uuid4().hex[:12]}"
    anyio.run(admin, server_dsn, f"CREATE DATABASE {empty}")
    try:
        result = run_cli(
            "db",
            "install",
            WORKER_EVENT_STORE__DATABASE_URI=as_user(with_database(server_dsn, empty), role),
        )
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f'lacks CREATE on database "{empty}" (to install MessageDB)' in lines[0]

        async def schemas() -> list[str]:
            conn = await asyncpg.connect(with_database(server_dsn, empty))
            try:
                rows = await conn.fetch(
                    "SELECT nspname FROM pg_namespace WHERE nspname IN ('message_store', 'worker')"
                )
                return [row[0] for row in rows]
            finally:
                await conn.close()

        assert anyio.run(schemas) == []
    finally:
        anyio.run(admin, server_dsn, f"DROP DATABASE IF EXISTS {empty} WITH (FORCE)")


def test_no_server_and_no_room_for_the_embedded_one_is_one_line(tmp_path: Path) -> None:
    """With no server configured and a data folder the embedded PostgreSQL cannot make (a
    read-only container, here a path through a file), a command fails with one line saying to
    configure a server."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli(
        "run",
        "--until-caught-up",
        WORKER_EVENT_STORE__DATABASE_URI="embedded",
        WORKER_EVENT_STORE__EMBEDDED_DATA_DIR=str(blocker / "postgres"),
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no PostgreSQL server is configured" in lines[0]
    assert "Set WORKER_EVENT_STORE__DATABASE_URI" in lines[0]


def test_version_prints_the_installed_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"worker {version('worker')}\n"
