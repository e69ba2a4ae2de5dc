"""What a process runs beside its consumers: probes and metrics, a service manager's
notifications, the garbage collector's settings. The runner starts each ``Service`` before it
reports ready, and tells each how the run goes (``READY=1``, ``STOPPING=1``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from worker.engine.consumer import Consumer
    from worker.store.message_store import MessageStore


class Service(Protocol):
    """One thing a ``Runner`` runs beside its consumers."""

    async def start(self, tg: TaskGroup, consumers: list[Consumer], store: MessageStore) -> None:
        """Start in ``tg`` (which lasts as long as the run); return once serving. ``consumers``
        is the run's list (it fills as they start), ``store`` its message store."""

    def notify(self, state: str) -> None:
        """Hear how the run goes: ``READY=1`` once everything started, ``STOPPING=1``."""
