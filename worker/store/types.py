"""Type aliases shared by the modules (imported under TYPE_CHECKING only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    # A connection of its own or one borrowed from a pool: both run statements the same way.
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

    # Anything that runs statements: a connection, a pooled one, or the pool itself.
    Executor: TypeAlias = Connection | asyncpg.Pool[Any]
