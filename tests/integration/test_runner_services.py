"""A ``Runner`` composed with services: each is started beside the consumers before the run
reports ready, and hears ``READY=1`` then ``STOPPING=1``; ``worker.Runner`` gives a deployed
process's services unless told otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.faults.app import tally
from worker import Runner, WorkerSettings
from worker.ops.runner import Collector, Probes, Systemd, probes_of

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from worker.engine.consumer import Consumer
    from worker.store.message_store import MessageStore

pytestmark = pytest.mark.anyio

SETTINGS = WorkerSettings(poll_interval_min=0.01, poll_interval_max=0.05)


class Recording:
    """A service that notes what the runner told it, in order."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    async def start(self, tg: TaskGroup, consumers: list[Consumer], store: MessageStore) -> None:
        self.heard.append(f"start with {[c.name for c in consumers]}")

    def notify(self, state: str) -> None:
        self.heard.append(state)


async def test_a_service_is_started_then_told_ready_then_stopping(database_dsn: str) -> None:
    """A run starts its services with its consumers, then says READY=1, and STOPPING=1 last."""
    service = Recording()
    runner = Runner(tally.domain, database_dsn, SETTINGS, services=[service])
    await runner.run(until_caught_up=True, handle_signals=False)
    assert service.heard == ["start with ['tallies:tally']", "READY=1", "STOPPING=1"]


async def test_worker_runner_runs_a_deployed_process_services(database_dsn: str) -> None:
    """By default the runner sets the collector, serves probes (none without ``http_port``)
    and notifies systemd."""
    runner = Runner(tally.domain, database_dsn, SETTINGS)
    await runner.run(until_caught_up=True, handle_signals=False)
    kinds: list[Any] = [type(s) for s in runner.services]
    assert (kinds, probes_of(runner)) == ([Collector, Probes, Systemd], None)
