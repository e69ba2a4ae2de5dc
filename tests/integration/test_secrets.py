"""A password given in the database URI's query (``?password=``, ``sslpassword``, ``passfile``,
any parameter named like a secret) never shows: not in error lines, JSON logs, ``worker db dsn``
or ``worker config``."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.cli import worker
from tests.conftest import admin
from worker.store.database import with_database

pytestmark = pytest.mark.anyio

SECRET = "hunter2"
QUERY = f"?password={SECRET}&sslpassword={SECRET}x&passfile=/run/{SECRET}"
SHOWN = "?password=***&sslpassword=***&passfile=***"


def secret_uri(server_dsn: str, database: str) -> str:
    return with_database(server_dsn, database) + QUERY


async def test_error_line_masks_a_query_password(server_dsn: str) -> None:
    """``worker status`` on a database that does not exist: one line, the URI masked."""
    result = await worker(secret_uri(server_dsn, f"missing_{uuid.uuid4().hex[:8]}"), "status")
    assert result.code == 1, result
    assert len(result.errors) == 1, result
    assert SHOWN in result.errors[0], result
    assert SECRET not in result.stdout + result.stderr, result


async def test_json_log_masks_a_query_password(server_dsn: str) -> None:
    """``worker db install`` logs the database it installs into, in JSON, masked."""
    name = f"ws_{uuid.uuid4().hex[:12]}"
    try:
        result = await worker(
            secret_uri(server_dsn, name), "db", "install", WORKER_WORKER__LOG_FORMAT="json"
        )
        assert result.code == 0, result
        [entry] = result.logged("installing MessageDB")
        assert entry["database"].endswith(f"/{name}{SHOWN}"), result
        assert SECRET not in result.stdout + result.stderr, result
    finally:
        await admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_db_dsn_masks_a_query_password(server_dsn: str) -> None:
    """``worker db dsn`` prints the URI masked; ``--show-password`` prints it as given."""
    uri = secret_uri(server_dsn, "anything")
    masked = await worker(uri, "db", "dsn")
    assert masked.code == 0, masked
    assert masked.stdout.strip().endswith(f"/anything{SHOWN}"), masked
    assert SECRET not in masked.stdout + masked.stderr, masked
    clear = await worker(uri, "db", "dsn", "--show-password")
    assert clear.stdout.strip() == uri, clear


async def test_config_masks_a_query_password(server_dsn: str) -> None:
    """``worker config`` and ``worker config --json`` show the URI masked."""
    uri = secret_uri(server_dsn, "anything")
    table = await worker(uri, "config", COLUMNS="400")
    assert table.code == 0, table
    assert SHOWN in table.stdout, table
    as_json = await worker(uri, "config", "--json")
    rows = {row["key"]: row["value"] for row in json.loads(as_json.stdout)["settings"]}
    assert rows["[event_store] database_uri"].endswith(f"/anything{SHOWN}"), as_json
    assert SECRET not in table.stdout + as_json.stdout + table.stderr + as_json.stderr
