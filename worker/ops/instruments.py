"""The Prometheus metrics of ``/metrics``, exported through OpenTelemetry as well
(``[telemetry] metrics = true``).

One observable instrument per metric family of ``worker.ops.health.ConsumerCollector``, read
from the same numbers when the meter provider's reader collects: Prometheus counters become
observable counters, gauges observable gauges, and each histogram two observable counters,
``<name>_sum`` and ``<name>_count`` (OpenTelemetry has no observable histogram). Labels become
attributes of the same names.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from worker.ops.health import ConsumerCollector

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from anyio.abc import TaskGroup

    from worker.engine.consumer import Consumer
    from worker.store.message_store import MessageStore

METER_NAME = "worker"
_FRESH = 0.5  # seconds one reading of the consumers serves every instrument of a collection


class Instruments:
    """A ``Service`` that registers the observable instruments on ``meter_provider``."""

    def __init__(self, meter_provider: Any) -> None:
        self.meter_provider = meter_provider
        self._collector: ConsumerCollector | None = None
        self._read: tuple[float, dict[str, list[Any]]] = (0.0, {})

    async def start(self, tg: TaskGroup, consumers: list[Consumer], store: MessageStore) -> None:
        self._collector = collector = ConsumerCollector(consumers)
        meter = self.meter_provider.get_meter(METER_NAME)
        for family in collector.collect():  # the families' names, kinds and documentation
            self._register(meter, family)

    def notify(self, state: str) -> None:
        pass

    def _register(self, meter: Any, family: Any) -> None:
        name, doc, kind = family.name, family.documentation, family.type
        if kind == "histogram":
            for suffix in ("_sum", "_count"):
                meter.create_observable_counter(
                    name + suffix, [self._observer(name, name + suffix)], description=doc
                )
        elif kind == "counter":
            meter.create_observable_counter(
                name, [self._observer(name, name + "_total")], description=doc
            )
        else:
            meter.create_observable_gauge(name, [self._observer(name, name)], description=doc)

    def _observer(self, family: str, sample: str) -> Callable[[Any], Iterable[Any]]:
        """A callback observing the samples called ``sample`` of family ``family``."""
        from opentelemetry.metrics import Observation

        def observe(_options: Any) -> Iterable[Any]:
            for s in self._families().get(family, []):
                if s.name == sample:
                    yield Observation(s.value, dict(s.labels))

        return observe

    def _families(self) -> dict[str, list[Any]]:
        """The collector's samples by family, read once for all the instruments of one
        collection."""
        at, families = self._read
        now = time.monotonic()
        if now - at > _FRESH and self._collector is not None:
            families = {f.name: f.samples for f in self._collector.collect()}
            self._read = (now, families)
        return families
