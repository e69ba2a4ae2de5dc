"""What every request of the console reaches: the application, a pool, the live look at the
consumers, the rebuilds it started, and how it was started."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker.ops.console.rebuilds import Rebuilds

if TYPE_CHECKING:
    import asyncpg
    from anyio.abc import TaskGroup

    from worker.ops.app import App
    from worker.ops.console.live import Live


@dataclass(frozen=True)
class Options:
    """How the console was started: actions on or off, the token, who the log names."""

    allow_actions: bool = False
    token: str | None = None
    operator: str = "operator"
    refresh: float = 2.0
    # The names a request's Host header may give (empty: any). On a loopback address the
    # console answers only to loopback names, so a page of another site whose name was made
    # to resolve to 127.0.0.1 (DNS rebinding) reads nothing.
    hosts: tuple[str, ...] = ()


@dataclass
class Console:
    """The running console (set up by the app's lifespan)."""

    app: App
    options: Options
    pool: asyncpg.Pool[Any]
    live: Live
    tasks: TaskGroup
    versions: dict[str, str]
    rebuilds: Rebuilds = field(default_factory=Rebuilds)
