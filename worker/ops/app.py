"""What the commands share: settings, the application's domain, the DSN, a ready database; and
``open_store``, the same for application code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from worker.errors import DatabaseUnavailableError
from worker.ops.instruments import Instruments
from worker.ops.loader import load_domain
from worker.ops.log import configure_logging
from worker.ops.runner import Runner, deployed
from worker.ops.settings import load_settings
from worker.ops.telemetry import Telemetry, start_telemetry
from worker.store import embedded, privileges
from worker.store.database import (
    EMBEDDED_DATABASE,
    Database,
    create_pool,
    is_embedded,
    start_embedded,
)
from worker.store.installer import check_installed
from worker.store.message_store import MessageStore

if TYPE_CHECKING:
    from collections.abc import Generator

    import asyncpg

    from worker.domain import Domain
    from worker.engine import runner
    from worker.ops.settings import Settings
    from worker.store.privileges import Right


def resolve_dsn(settings: Settings, *, start: bool = True) -> str:
    """The DSN in force: the configured one, or the embedded server's when none is configured
    (started if it is not running; with ``start=False``, an error saying it is not running)."""
    uri = settings.event_store.dsn()
    if is_embedded(uri):
        if start:
            return start_embedded(settings.event_store.embedded_data_dir)
        return running_embedded(settings.event_store.embedded_data_dir)
    assert uri is not None
    return uri


def running_embedded(data_dir: Path) -> str:
    """The DSN of the embedded server running in ``data_dir``; one line if none runs there."""
    server = embedded.running(data_dir)
    if server is None:
        raise DatabaseUnavailableError(
            f"the embedded PostgreSQL is not running (data folder {data_dir.resolve()}), and this "
            "command only reads, so it starts none: `worker db install` or `worker run` starts "
            "it; or set WORKER_EVENT_STORE__DATABASE_URI to a server"
        )
    return server.dsn(EMBEDDED_DATABASE)


def resolve_database(settings: Settings, *, start: bool = True) -> Database:
    """``resolve_dsn``'s DSN with the settings' connection options."""
    return settings.database(resolve_dsn(settings, start=start))


@dataclass
class App:
    """A configured application: its settings, domain and DSN."""

    settings: Settings
    domain: Domain
    dsn: str
    telemetry: Telemetry | None = field(default=None, repr=False)  # once started

    @property
    def database(self) -> Database:
        """How this application connects: its DSN with the settings' options."""
        return self.settings.database(self.dsn)

    @classmethod
    def load(cls, settings: Settings, *, read_only: bool = False) -> App:
        """Load the domain named by the settings and resolve the database (``read_only``: a
        command that only reads never starts the embedded server)."""
        return cls(settings, load_domain(settings), resolve_dsn(settings, start=not read_only))

    def runner(self, *, only: list[str] | None = None) -> runner.Runner:
        """The worker of this application (``worker run``'s), to run in this process; with
        ``[telemetry] enabled``, traced (``start_telemetry``), and with ``metrics`` its
        metrics exported through OpenTelemetry too."""
        telemetry = self.start_telemetry()
        services = deployed(self.settings.worker)
        if telemetry is not None and telemetry.meter_provider is not None:
            services += (Instruments(telemetry.meter_provider),)
        return Runner(
            self.domain, self.database, self.settings.worker, only=only, services=services
        )

    def start_telemetry(self) -> Telemetry | None:
        """OpenTelemetry as ``[telemetry]`` asks, started once for this application (spans and
        trace context from then on); ``None`` when telemetry is not enabled.
        ``TelemetryUnavailableError`` when it is enabled and the ``telemetry`` extra is not
        installed."""
        if self.telemetry is None:
            self.telemetry = start_telemetry(self.settings.telemetry)
        return self.telemetry

    async def pool(
        self, max_size: int = 4, rights: tuple[Right, ...] = privileges.WRITE
    ) -> asyncpg.Pool[Any]:
        """A pool on a database where MessageDB and the worker schema are installed and the
        role has ``rights``."""
        pool = await create_pool(self.database, min_size=1, max_size=max_size)
        try:
            async with pool.acquire() as conn:
                await check_installed(conn, rights)
        except BaseException:
            await pool.close()
            raise
        return pool


def open_app(config: str | Path | None = None, *, read_only: bool = False, **overrides: Any) -> App:
    """The application ``domain.toml`` configures, opened as ``worker`` commands open it.

    ``config`` (else ``$WORKER_CONFIG``, else ``./domain.toml``) overlaid by ``WORKER_*``
    variables and by ``overrides`` (as ``worker.load_settings`` takes them, e.g.
    ``worker={"log_level": "warning"}``) gives the settings; logging is configured by
    ``[worker] log_level`` and ``log_format`` (``worker.configure_logging``); the domain named by
    ``[domain] instance`` is loaded; the database is resolved (``embedded`` starts the embedded
    server, unless ``read_only``). ``App.pool()`` then opens a checked pool, ``App.runner()`` the
    worker of this application::

        app = open_app()
        pool = await app.pool()
    """
    settings = load_settings(None if config is None else Path(config), **overrides)
    configure_logging(settings.worker.log_level, settings.worker.log_format)
    return App.load(settings, read_only=read_only)


def open_store(
    config: str | Path | None = None,
    *,
    domain: Domain | None = None,
    max_size: int = 10,
    **overrides: Any,
) -> OpeningStore:
    """A ``MessageStore`` on the database ``domain.toml`` names, found as the CLI finds it.

    ``config`` (else ``$WORKER_CONFIG``, else ``./domain.toml``) overlaid by ``WORKER_*``
    variables gives ``[event_store] database_uri`` (``embedded`` starts the embedded server) and
    the connection options; ``domain``, when given, takes its ``[domain]`` settings
    (``conventions``, ``snapshot_threshold``) as ``worker run`` applies them. The store's pool
    (up to ``max_size`` connections) is checked once: MessageDB installed, the role's rights on
    it, and, when ``domain`` has aggregates that are not event-sourced, the worker schema's
    state rows. Await it, or enter it (the pool closes on leaving)::

        async with open_store(domain=shop) as store:
            orders = shop.repository_for(Order, store)

    ``overrides`` set settings as ``worker.load_settings`` takes them.
    """
    return OpeningStore(None if config is None else Path(config), domain, max_size, overrides)


class OpeningStore:
    """What ``open_store`` returns: awaitable, and an async context manager."""

    def __init__(
        self,
        config: Path | None,
        domain: Domain | None,
        max_size: int,
        overrides: dict[str, Any],
    ) -> None:
        self._config = config
        self._domain = domain
        self._max_size = max_size
        self._overrides = overrides
        self._store: MessageStore | None = None

    async def _open(self) -> MessageStore:
        settings = load_settings(self._config, **self._overrides)
        if self._domain is not None:
            self._domain.configure(settings)
        state = self._domain is not None and any(
            not cls.__is_event_sourced__ for cls in self._domain.aggregates
        )
        rights = privileges.MESSAGES + (privileges.STATE if state else ())
        # may start the embedded one
        database = await anyio.to_thread.run_sync(resolve_database, settings)
        pool = await create_pool(database, min_size=1, max_size=self._max_size)
        try:
            async with pool.acquire() as conn:
                await check_installed(conn, rights, worker_schema=state)
        except BaseException:
            await pool.close()
            raise
        return MessageStore(pool)

    def __await__(self) -> Generator[Any, None, MessageStore]:
        return self._open().__await__()

    async def __aenter__(self) -> MessageStore:
        self._store = await self._open()
        return self._store

    async def __aexit__(self, *exc_info: object) -> None:
        if self._store is not None:
            await self._store.__aexit__(*exc_info)
            self._store = None
