"""What the commands share: settings, the application's domain, the DSN, a ready database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.ops.loader import load_domain
from worker.store import privileges
from worker.store.database import ConnectOptions, configure, create_pool, resolve_dsn
from worker.store.installer import check_installed

if TYPE_CHECKING:
    import asyncpg

    from worker.domain import Domain
    from worker.ops.settings import Settings
    from worker.store.privileges import Right


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
        configure(ConnectOptions.from_settings(settings))
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
