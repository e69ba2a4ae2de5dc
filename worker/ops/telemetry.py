"""OpenTelemetry's SDK set up from ``[telemetry]``: a tracer provider (and a meter provider
with ``metrics = true``) with the OTLP/HTTP or the console exporter.

The standard ``OTEL_*`` variables win over ``domain.toml`` where both say something:
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` over ``service_name`` and
``resource_attributes``; ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the ``_TRACES_`` / ``_METRICS_``
ones) over ``endpoint``; the others (headers, timeouts, compression, ``OTEL_BSP_*``) are read
by the SDK as it documents them. Enabling telemetry without the ``telemetry`` extra installed
fails at start with ``TelemetryUnavailableError``.
"""

from __future__ import annotations

import atexit
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from worker.store import tracing
from worker.store.tracing import TelemetryUnavailableError

if TYPE_CHECKING:
    from worker.ops.settings import TelemetrySettings

_TRACES_ENDPOINT = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_METRICS_ENDPOINT = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


@dataclass
class Telemetry:
    """The providers in force; ``shutdown`` exports what is pending and turns tracing off."""

    tracer_provider: Any
    meter_provider: Any = None
    _files: ExitStack = field(default_factory=ExitStack)
    _done: bool = False

    def shutdown(self) -> None:
        """Flush and stop the providers (spans and metrics not yet exported are sent now);
        called at the process's exit too, once in all."""
        if self._done:
            return
        self._done = True
        atexit.unregister(self.shutdown)
        tracing.stop()
        self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        self._files.close()


def start_telemetry(settings: TelemetrySettings) -> Telemetry | None:
    """Tracing (and metrics) as ``settings`` ask; ``None`` when telemetry is not enabled."""
    if not settings.enabled:
        return None
    files = ExitStack()
    try:
        provider, meters = _providers(settings, files)
    except ImportError as error:
        files.close()
        raise TelemetryUnavailableError(
            "[telemetry] enabled = true needs OpenTelemetry's SDK and OTLP exporter: install "
            f"the extra (pip install 'worker[telemetry]'); {error}"
        ) from None
    tracing.start(provider)
    telemetry = Telemetry(provider, meters, files)
    atexit.register(telemetry.shutdown)
    return telemetry


def _providers(settings: TelemetrySettings, files: ExitStack) -> tuple[Any, Any]:
    """The tracer provider and the meter provider (``None`` without ``metrics``)."""
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider

    attributes = {**settings.resource_attributes, "service.name": settings.service_name}
    resource = Resource.create(attributes).merge(OTELResourceDetector().detect())
    out = _console_out(settings, files)
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(_span_processor(settings, out))
    meters = _meter_provider(settings, resource, out) if settings.metrics else None
    return provider, meters


def _console_out(settings: TelemetrySettings, files: ExitStack) -> TextIO:
    """Where the console exporter writes: ``endpoint`` (a file, appended to) or stdout."""
    if settings.exporter != "console" or settings.endpoint is None:
        return sys.stdout
    return files.enter_context(open(settings.endpoint, "a", encoding="utf-8"))


def _span_processor(settings: TelemetrySettings, out: TextIO) -> Any:
    """Console: each span written as it ends, one JSON object a line. OTLP: spans sent in
    batches by a background thread (``OTEL_BSP_*``)."""
    if settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

        exporter = ConsoleSpanExporter(out=out, formatter=_one_line)
        return SimpleSpanProcessor(exporter)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return BatchSpanProcessor(OTLPSpanExporter(endpoint=_endpoint(settings, "traces")))


def _meter_provider(settings: TelemetrySettings, resource: Any, out: TextIO) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )

    exporter: Any
    if settings.exporter == "console":
        exporter = ConsoleMetricExporter(out=out, formatter=_one_line)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(endpoint=_endpoint(settings, "metrics"))
    interval = int(settings.metrics_interval * 1000)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval)
    return MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)


def _endpoint(settings: TelemetrySettings, signal: str) -> str | None:
    """``endpoint``'s URL for ``signal``, unless an ``OTEL_*`` variable names one (it wins)."""
    names = _TRACES_ENDPOINT if signal == "traces" else _METRICS_ENDPOINT
    if settings.endpoint is None or any(os.environ.get(name) for name in names):
        return None
    return f"{settings.endpoint.rstrip('/')}/v1/{signal}"


def _one_line(item: Any) -> str:
    text: str = item.to_json(indent=None)
    return text + "\n"
