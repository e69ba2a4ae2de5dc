"""Trace context in message metadata, and the worker's spans: a shim over OpenTelemetry's API.

Telemetry is off until ``start`` is called (by ``worker.ops.telemetry`` from ``[telemetry]``, or
by a test with its own tracer provider); while it is off ``active()`` is ``None`` and the hooks
that write metadata or open spans do nothing. OpenTelemetry is imported only by ``start``, so
the package works without the ``telemetry`` extra installed.

The W3C ``traceparent`` of the span current when a message is written goes into its metadata:
at the top level in Eventide's layout, in ``headers.traceparent`` in Protean's (where Protean
0.18 reads and writes it). Reading, both places are looked at.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

import orjson

from worker.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

TRACEPARENT = "traceparent"
TRACER_NAME = "worker"

_tracing: Tracing | None = None


class TelemetryUnavailableError(ConfigurationError):
    """Telemetry is enabled but OpenTelemetry (the ``telemetry`` extra) is not installed."""


def active() -> Tracing | None:
    """The tracing in force, or ``None`` while telemetry is off."""
    return _tracing


def start(tracer_provider: Any = None) -> Tracing:
    """Turn tracing on with ``tracer_provider`` (default: OpenTelemetry's global one): for an
    application that sets OpenTelemetry up itself (``[telemetry]`` and ``App.runner()`` do it
    from the settings). Consumers built from then on trace; ``TelemetryUnavailableError``
    without OpenTelemetry installed."""
    global _tracing  # one process, one tracing
    try:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError as error:
        raise TelemetryUnavailableError(
            "[telemetry] enabled = true needs OpenTelemetry: install the extra "
            f"(pip install 'worker[telemetry]'); {error}"
        ) from None
    tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
    _tracing = Tracing(trace, TraceContextTextMapPropagator(), tracer, context.Context())
    return _tracing


def stop() -> None:
    """Turn tracing off: messages written from now on carry no trace context, and consumers
    built from then on open no span."""
    global _tracing  # (see ``start``)
    _tracing = None


def stamp(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """``metadata`` with the current trace context in it, when tracing is on and a span is
    current; else ``metadata`` itself. A ``traceparent`` already there is kept."""
    tracing = _tracing
    if tracing is None:
        return metadata
    return tracing.stamp(metadata)


def span(name: str, attributes: Mapping[str, Any]) -> contextlib.AbstractContextManager[Any]:
    """A span current while the block runs, when telemetry is on; else a block that yields
    ``None`` and costs nothing. Messages written inside it carry its trace context, so a
    request of the application and every handler it sets off are one trace::

        with worker.span("place order", {"customer": "Ada"}):
            await repository.add(order)
    """
    tracing = _tracing
    if tracing is None:
        return contextlib.nullcontext()
    return tracing.span(name, attributes)


def traceparent_of(metadata: str | Mapping[str, Any] | None) -> str | None:
    """The ``traceparent`` a message's metadata (JSON text, or decoded) holds, if any: at the
    top level, or in Protean's ``headers``."""
    if metadata is None:
        return None
    if isinstance(metadata, str):
        if TRACEPARENT not in metadata:  # most messages: no decoding
            return None
        decoded = orjson.loads(metadata)
        if not isinstance(decoded, dict):
            return None
        metadata = decoded
    value = metadata.get(TRACEPARENT)
    if value is None:
        headers = metadata.get("headers")
        value = headers.get(TRACEPARENT) if isinstance(headers, dict) else None
    return value if isinstance(value, str) else None


class Tracing:
    """Tracing on: spans from one tracer, trace context read from and written to metadata."""

    def __init__(self, trace: Any, propagator: Any, tracer: Any, root: Any) -> None:
        self.trace = trace  # the ``opentelemetry.trace`` module
        self._propagator = propagator
        self.tracer = tracer
        self._root = root  # an empty context: a span started in it starts a trace
        self._context_of = functools.lru_cache(maxsize=4096)(self._parse)

    def current_traceparent(self) -> str | None:
        """The W3C ``traceparent`` of the span current in this task, if any."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get(TRACEPARENT)

    def stamp(self, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        """See the module's ``stamp``."""
        traceparent = self.current_traceparent()
        if traceparent is None:
            return metadata
        if metadata is None:
            return {TRACEPARENT: traceparent}
        headers = metadata.get("headers")
        if isinstance(headers, dict) and TRACEPARENT in headers:  # Protean's envelope
            if headers[TRACEPARENT] is not None:
                return metadata
            return {**metadata, "headers": {**headers, TRACEPARENT: traceparent}}
        if metadata.get(TRACEPARENT) is not None:
            return metadata
        return {**metadata, TRACEPARENT: traceparent}

    def parent(self, metadata: str | Mapping[str, Any] | None) -> Any:
        """The OpenTelemetry context a message's ``traceparent`` names; an empty one (a span
        started in it starts a trace) when it names none or one that does not parse."""
        return self._extracted(metadata) or self._root

    def link(self, metadata: str | Mapping[str, Any] | None) -> Any:
        """A span link to the trace context a message's metadata names, if any."""
        context = self._extracted(metadata)
        if context is None:
            return None
        return self.trace.Link(self.trace.get_current_span(context).get_span_context())

    def _extracted(self, metadata: str | Mapping[str, Any] | None) -> Any:
        traceparent = traceparent_of(metadata)
        return None if traceparent is None else self._context_of(traceparent)

    def _parse(self, traceparent: str) -> Any:
        """The context ``traceparent`` names (``None`` if it does not parse); cached, since a
        batch's link and its message's span read the same one (``_context_of``)."""
        context = self._propagator.extract({TRACEPARENT: traceparent})
        span_context = self.trace.get_current_span(context).get_span_context()
        return context if span_context.is_valid else None

    @contextlib.contextmanager
    def span(
        self, name: str, attributes: Mapping[str, Any], *, parent: Any = None, links: Any = None
    ) -> Iterator[Any]:
        """A span current in this task while the block runs (``parent``: an OpenTelemetry
        context; ``None``: the current one); an exception leaving the block is recorded on it
        (status ERROR) unless the block recorded one itself (``fail``)."""
        with self.tracer.start_as_current_span(
            name,
            context=parent,
            attributes=dict(attributes),
            links=links,
            kind=self.trace.SpanKind.INTERNAL,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except Exception as error:
                status = getattr(span, "status", None)
                if status is None or status.is_unset:
                    self.fail(span, error)
                raise

    def fail(self, span: Any, error: BaseException) -> None:
        """Record ``error`` on ``span`` and set its status to ERROR."""
        span.record_exception(error)
        span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, repr(error)[:200]))

    def trace_ids(self) -> tuple[str, str] | None:
        """(trace id, span id) of the span current in this task, in hex, if any."""
        context = self.trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return format(context.trace_id, "032x"), format(context.span_id, "016x")
