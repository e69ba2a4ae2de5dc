"""What the commands share: settings, the application's domain, the DSN, a ready database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.ops.loader import load_domain
from worker.store import privileges
from worker.store.database import (
    ConnectOptions,
    configure,
    create_pool,
    is_embedded,
    start_embedded,
)
from worker.store.installer import check_installed

if TYPE_CHECKING:
    import asyncpg

    from worker.domain import Domain
    from worker.ops.settings import Settings
    from worker.store.privileges import Right


def resolve_dsn(settings: Settings) -> str:
    """The DSN in force: the configured one, or the embedded server's when none is configured."""
    uri = settings.event_store.dsn()
    if is_embedded(uri):
        return start_embedded(settings.event_store.embedded_data_dir)
    assert uri is not None
    return uri


def connect_options(settings: Settings) -> ConnectOptions:
    """The connection options the settings ask for (timeout, read-model schema)."""
    return ConnectOptions(settings.event_store.connect_timeout, settings.worker.read_model_schema)


@dataclass
class App:
    """A configured application: its settings, domain and DSN."""

    settings: Settings
    domain: Domain
    dsn: str

    @classmethod
    def load(cls, settings: Settings) -> App:
        """Load the domain named by the settings, resolve the database, and make the settings'
        connection options (timeout, read-model schema) those of every connection."""
        configure(connect_options(settings))
        return cls(settings, load_domain(settings), resolve_dsn(settings))

    async def pool(
        self, max_size: int = 4, rights: tuple[Right, ...] = privileges.WRITE
    ) -> asyncpg.Pool[Any]:
        """A pool on a database where MessageDB and the worker schema are installed and the
        role has ``rights``."""
        pool = await create_pool(self.dsn, min_size=1, max_size=max_size)
        try:
            async with pool.acquire() as conn:
                await check_installed(conn, rights)
        except BaseException:
            await pool.close()
            raise
        return pool
