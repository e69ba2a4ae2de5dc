"""``worker.Runner``: the engine's runner with the services a deployed process runs beside it.

Probes and Prometheus metrics on ``[worker] http_port``; systemd's ``READY=1`` /
``STOPPING=1`` notifications and, when the unit sets ``WatchdogSec``, ``WATCHDOG=1`` from the
event loop at half that interval; the process's garbage collector set for the work
(``worker.ops.collector``, ``[worker] gc_threshold``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.engine import runner
from worker.ops import collector
from worker.ops.health import HealthServer, keep_watchdog, notify_systemd, watchdog_interval

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.abc import TaskGroup

    from worker.engine.consumer import Consumer
    from worker.engine.services import Service
    from worker.engine.subscriber import Subscriptions
    from worker.ops.settings import WorkerSettings
    from worker.store.database import Database
    from worker.store.message_store import MessageStore


def Runner(
    domain: Subscriptions,
    dsn: str | Database,
    settings: WorkerSettings,
    *,
    only: list[str] | None = None,
    services: Sequence[Service] | None = None,
) -> runner.Runner:
    """The engine's ``Runner`` of ``domain``'s consumers (``only`` these, when given) with
    ``services`` beside them, by default those of a deployed process (``deployed``): it serves
    ``/healthz``, ``/readyz`` and ``/metrics`` when ``http_port`` is set, tells systemd when it
    is ready and when it stops, keeps its watchdog fed, and sets the garbage collector."""
    chosen = deployed(settings) if services is None else services
    return runner.Runner(domain, dsn, settings, only=only, services=chosen)


def deployed(settings: WorkerSettings) -> tuple[Service, ...]:
    """The services of a deployed process, as ``settings`` ask for them."""
    return (Collector(settings.gc_threshold), Probes(settings), Systemd())


def probes_of(run: runner.Runner) -> HealthServer | None:
    """The probes and metrics server ``run`` serves, once started (``None`` without
    ``http_port``)."""
    found = [s.server for s in run.services if isinstance(s, Probes)]
    return found[0] if found else None


class Collector:
    """Sets the garbage collector for the work when the run starts."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold

    async def start(self, tg: TaskGroup, consumers: list[Consumer], store: MessageStore) -> None:
        collector.tune(self.threshold)

    def notify(self, state: str) -> None:
        pass


class Probes:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``[worker] http_host:http_port``."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.server: HealthServer | None = None

    async def start(self, tg: TaskGroup, consumers: list[Consumer], store: MessageStore) -> None:
        port = self.settings.http_port
        if port is None:
            return
        host, unready_after = self.settings.http_host, self.settings.unready_after
        self.server = HealthServer(consumers, store, host, port, unready_after=unready_after)
        await tg.start(self.server.serve)

    def notify(self, state: str) -> None:
        pass


class Systemd:
    """systemd's notifications, and its watchdog fed from the event loop when the unit asks."""

    async def start(self, tg: TaskGroup, consumers: list[Consumer], store: MessageStore) -> None:
        interval = watchdog_interval()
        if interval is not None:
            tg.start_soon(keep_watchdog, interval)

    def notify(self, state: str) -> None:
        notify_systemd(state)
