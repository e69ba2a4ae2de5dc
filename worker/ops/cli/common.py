"""What every command shares: the ``--config`` path, the settings, the application, a pool."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import anyio

from worker.errors import UsageError
from worker.ops.app import open_app
from worker.ops.log import configure_logging
from worker.ops.settings import Settings, load_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from pathlib import Path

    import asyncpg

    from worker.ops.app import App


class _Invocation:
    """The root command's options, set before any command runs."""

    config: Path | None = None


invocation = _Invocation()


def settings() -> Settings:
    """The settings of this invocation; configures logging to match."""
    loaded = load_settings(invocation.config)
    configure_logging(loaded.worker.log_level, loaded.worker.log_format)
    return loaded


def load_app(*, read_only: bool = False) -> App:
    """The configured application: settings, domain and DSN (a command that only reads,
    ``read_only``, never starts the embedded server)."""
    return open_app(invocation.config, read_only=read_only)


def whole_number(what: str) -> Callable[[str], int]:
    """A parser for an option or argument that takes a whole number (0 or more): anything else
    is a ``UsageError`` naming ``what`` (one line, exit 2), not a usage box."""

    def parse(text: str | int) -> int:
        if isinstance(text, int):  # the option's default, given as it is
            return text
        if re.fullmatch(r"[0-9]{1,18}", text.strip()) is None:
            raise UsageError(f"{what} must be a whole number (0 or more), got {text!r}")
        return int(text)

    return parse


def with_pool(
    work: Callable[[App, asyncpg.Pool[Any]], Coroutine[Any, Any, Any]],
    *,
    read_only: bool = False,
    app: App | None = None,
    **pool_options: Any,
) -> Any:
    """Run ``work(app, pool)`` on a pool of the configured database (of ``app``, else of the
    application this invocation loads), closed afterwards: every command's way to a pool."""
    application = app or load_app(read_only=read_only)

    async def main() -> Any:
        pool = await application.pool(**pool_options)
        try:
            return await work(application, pool)
        finally:
            await pool.close()

    return anyio.run(main)
