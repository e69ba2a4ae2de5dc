"""``worker.Runner``: the engine's runner with what a deployed process serves around it.

Probes and Prometheus metrics on ``[worker] http_port``, and systemd's ``READY=1`` /
``STOPPING=1`` notifications and, when the unit sets ``WatchdogSec``, ``WATCHDOG=1`` from the
event loop at half that interval. The process's garbage collector is set for the work
(``worker.ops.collector``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.engine import runner
from worker.ops import collector
from worker.ops.health import HealthServer, keep_watchdog, notify_systemd, watchdog_interval

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from worker.engine.runner import RunResult
    from worker.engine.subscriber import Subscriptions
    from worker.ops.settings import WorkerSettings
    from worker.store.message_store import MessageStore


class Runner(runner.Runner):
    """Runs a domain's consumers; serves ``/healthz``, ``/readyz`` and ``/metrics`` when
    ``http_port`` is set, tells systemd when it is ready and when it stops, and keeps its
    watchdog fed while the event loop runs."""

    def __init__(
        self,
        domain: Subscriptions,
        dsn: str,
        settings: WorkerSettings,
        *,
        only: list[str] | None = None,
    ) -> None:
        super().__init__(domain, dsn, settings, only=only)
        self.process = settings
        self.health: HealthServer | None = None

    async def run(self, *, until_caught_up: bool = False, handle_signals: bool = True) -> RunResult:
        """Run until signalled (or, with ``until_caught_up``, until every consumer is), with
        the garbage collector set for the work (``[worker] gc_threshold``)."""
        collector.tune(self.process.gc_threshold)
        return await super().run(until_caught_up=until_caught_up, handle_signals=handle_signals)

    async def _services(self, tg: TaskGroup, store: MessageStore) -> None:
        if self.process.http_port is not None:
            self.health = HealthServer(
                self.result.consumers,
                store,
                self.process.http_host,
                self.process.http_port,
                unready_after=self.process.unready_after,
            )
            await tg.start(self.health.serve)
        interval = watchdog_interval()
        if interval is not None:
            tg.start_soon(keep_watchdog, interval)

    def _notify(self, state: str) -> None:
        notify_systemd(state)
