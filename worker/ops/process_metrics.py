"""Prometheus metrics of process managers: what this process's consumers did to instances
(counters read from them at scrape time) and, from the database at each scrape, the active
instances and the deadlines by state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from worker.engine import process_queries as q
from worker.engine.deadlines import PostgresDeadlines
from worker.engine.steps import ProcessSteps

if TYPE_CHECKING:
    from collections.abc import Iterator

    from worker.engine.consumer import Consumer
    from worker.store.message_store import MessageStore

log = structlog.get_logger("worker.health")

# ProcessStats field -> (metric, documentation); one sample per process manager consumer.
_COUNTERS = {
    "started": ("worker_process_instances_started", "Instances started by this process"),
    "ended": ("worker_process_instances_ended", "Instances ended by this process"),
    "skipped": (
        "worker_process_events_skipped",
        "Events that correlated to no instance and may not start one",
    ),
    "ignored": ("worker_process_events_ignored", "Events that reached an ended instance"),
    "repeated": (
        "worker_process_events_repeated",
        "Events an instance had handled before (after a reset), passed over",
    ),
    "scheduled": ("worker_process_deadlines_scheduled", "Deadlines scheduled by this process"),
    "delivered": ("worker_process_deadlines_fired", "Deadlines delivered by this process"),
    "failed_deliveries": (
        "worker_process_deadline_failures",
        "Failed deadline deliveries (each attempt counts)",
    ),
}


class ProcessCollector:
    """Process manager metrics (see the module doc); ``refresh`` reads the database ones."""

    def __init__(self, consumers: list[Consumer]) -> None:
        self._consumers = consumers
        self.active: dict[str, int] = {}  # process manager -> active instances
        self.deadlines: dict[str, tuple[int, int, int]] = {}  # -> pending, due, failed

    def _steps(self) -> list[tuple[Consumer, ProcessSteps]]:
        return [(c, c.instance) for c in self._consumers if isinstance(c.instance, ProcessSteps)]

    def collect(self) -> Iterator[Any]:
        counters = {
            field: CounterMetricFamily(name, doc, labels=["consumer"])
            for field, (name, doc) in _COUNTERS.items()
        }
        for consumer, steps in self._steps():
            for field, family in counters.items():
                family.add_metric([consumer.name], getattr(steps.stats, field))
        yield from counters.values()
        yield from self._gauges()

    def _gauges(self) -> Iterator[Any]:
        active = GaugeMetricFamily(
            "worker_process_instances_active", "Instances not ended", labels=["process"]
        )
        pending, due, failed = (
            GaugeMetricFamily(name, doc, labels=["process"])
            for name, doc in (
                ("worker_process_deadlines_pending", "Deadlines neither fired nor cancelled"),
                ("worker_process_deadlines_due", "Pending deadlines whose time has come"),
                ("worker_process_deadlines_failed", "Deadlines given up after max_attempts"),
            )
        )
        for name, count in self.active.items():
            active.add_metric([name], count)
        for name, (p, d, f) in self.deadlines.items():
            pending.add_metric([name], p)
            due.add_metric([name], d)
            failed.add_metric([name], f)
        yield from (active, pending, due, failed)

    async def refresh(self, store: MessageStore) -> None:
        """Read the active instances and the deadlines of this process's process managers."""
        processes = {steps.name: steps.process.category for _, steps in self._steps()}
        if not processes:
            return
        try:
            for name, category in processes.items():
                row = await store.executor.fetchrow(q.PROCESS_INSTANCES, category)
                self.active[name] = 0 if row is None else row["active"]
            for c in await PostgresDeadlines(store.executor).counts():  # type: ignore[arg-type]
                if c.process in processes:
                    self.deadlines[c.process] = (c.pending, c.due, c.failed)
        except Exception as error:  # metrics must not fail a scrape for a lost connection
            log.warning("process figures unavailable for metrics", error=str(error))
