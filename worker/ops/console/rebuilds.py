"""Rebuilds the console started: each runs in the console's task group, its progress kept
for the projections page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import asyncpg
import structlog

from worker.engine import operations
from worker.errors import WorkerError

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from worker.engine.subscriber import Subscriber
    from worker.ops.app import App

log = structlog.get_logger("worker.console")


@dataclass
class Progress:
    """One rebuild: messages done of the total so far, and how it ended (``None`` while it
    runs; else a line saying what came of it, and whether that is a failure)."""

    projection: str
    done: int = 0
    total: int = 0
    ended: str | None = None
    failed: bool = False

    @property
    def share(self) -> int:
        return 100 if self.total == 0 else min(100, self.done * 100 // self.total)


class Rebuilds:
    """The rebuilds of this console, by projection; one at a time per projection."""

    def __init__(self) -> None:
        self.by_projection: dict[str, Progress] = {}

    def running(self, projection: str) -> bool:
        found = self.by_projection.get(projection)
        return found is not None and found.ended is None

    def start(self, tg: TaskGroup, app: App, subscriber: Subscriber) -> Progress:
        """Rebuild ``subscriber``'s projection blue/green in ``tg``; ``WorkerError`` when this
        console rebuilds it already."""
        if self.running(subscriber.name):
            raise WorkerError(f"{subscriber.name} is being rebuilt already")
        progress = self.by_projection[subscriber.name] = Progress(subscriber.name)
        tg.start_soon(_rebuild, app, subscriber, progress)
        return progress


async def _rebuild(app: App, subscriber: Subscriber, progress: Progress) -> None:
    def report(done: int, total: int) -> None:
        progress.done, progress.total = done, total

    # As `worker rebuild` sizes its pool: the builders, their leases and the hand-over.
    pool = await app.pool(max_size=3 * len(subscriber.slots()) + 2)
    try:
        outcome = await operations.rebuild_projection(
            pool, app.database, app.settings.worker, subscriber, on_progress=report
        )
        progress.ended = f"live generation {outcome.generation}"
    except (WorkerError, asyncpg.PostgresError) as error:
        progress.ended, progress.failed = f"failed: {error}", True
        log.error("console rebuild failed", projection=subscriber.name, error=str(error))
    finally:
        with anyio.CancelScope(shield=True):
            await pool.close()
    log.info("console rebuild ended", projection=subscriber.name, outcome=progress.ended)
