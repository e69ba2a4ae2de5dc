"""Telemetry without a database: where the trace context goes in each layout, the
``[telemetry]`` settings, the SDK set-up, and the start-up error without the extra."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from worker import BaseEvent, ConfigurationError, load_settings
from worker.ops.settings import TelemetrySettings
from worker.ops.telemetry import start_telemetry
from worker.store import tracing
from worker.store.conventions import PROTEAN
from worker.store.layout import Outgoing
from worker.store.tracing import TelemetryUnavailableError, stamp, traceparent_of

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Placed(BaseEvent):
    order: str


@pytest.fixture
def traced() -> Iterator[tracing.Tracing]:
    provider = TracerProvider()
    try:
        yield tracing.start(provider)
    finally:
        tracing.stop()
        provider.shutdown()


def test_off_nothing_is_written_and_the_metadata_is_the_same_object() -> None:
    """While telemetry is off, writing a message leaves its metadata as it is."""
    metadata: dict[str, Any] = {"correlationStreamName": "shop-1"}
    assert tracing.active() is None
    assert stamp(metadata) is metadata
    assert stamp(None) is None


def test_eventide_layout_gets_a_top_level_traceparent(traced: tracing.Tracing) -> None:
    """Inside a span, a message's metadata gains ``traceparent`` at the top level, naming the
    current span; a message outside any span gets none."""
    assert stamp({"a": 1}) == {"a": 1}
    with traced.tracer.start_as_current_span("request") as span:
        context = span.get_span_context()
        stamped = stamp({"a": 1})
        fresh = stamp(None)
    assert stamped is not None and fresh is not None
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-"
    assert stamped["traceparent"].startswith(expected) and stamped["a"] == 1
    assert fresh["traceparent"] == stamped["traceparent"]


def test_protean_layout_gets_it_in_its_headers(traced: tracing.Tracing) -> None:
    """In Protean's envelope the trace context goes where Protean 0.18 reads it,
    ``headers.traceparent`` (which it writes as null), and nowhere else."""
    out = Outgoing("Test.Placed.v1", {"order": "o1"}, "test::order-o1", "t.Placed", 1, "id1", 0)
    metadata = PROTEAN.metadata(out, None, None)
    assert metadata is not None and metadata["headers"]["traceparent"] is None
    with traced.tracer.start_as_current_span("request"):
        stamped = stamp(metadata)
    assert stamped is not None
    assert stamped["headers"]["traceparent"].startswith("00-")
    assert "traceparent" not in stamped
    assert traceparent_of(json.dumps(stamped)) == stamped["headers"]["traceparent"]


def test_a_traceparent_already_there_is_kept(traced: tracing.Tracing) -> None:
    """A message that names its trace context itself keeps it."""
    with traced.tracer.start_as_current_span("request"):
        assert stamp({"traceparent": TRACEPARENT}) == {"traceparent": TRACEPARENT}


@pytest.mark.parametrize(
    ("metadata", "found"),
    [
        (None, None),
        ('{"a": 1}', None),
        (f'{{"traceparent": "{TRACEPARENT}"}}', TRACEPARENT),
        (f'{{"headers": {{"traceparent": "{TRACEPARENT}"}}}}', TRACEPARENT),
        ('["traceparent"]', None),
        ('{"traceparent": 7}', None),
    ],
)
def test_traceparent_is_read_from_either_place(metadata: str | None, found: str | None) -> None:
    assert traceparent_of(metadata) == found


def test_a_traceparent_that_does_not_parse_starts_a_trace(traced: tracing.Tracing) -> None:
    """A malformed traceparent is no parent: the span starts a trace of its own."""
    with traced.span("handle", {}, parent=traced.parent('{"traceparent": "00-zz-zz-01"}')) as s:
        assert s.parent is None
    with traced.span(
        "handle", {}, parent=traced.parent(f'{{"traceparent": "{TRACEPARENT}"}}')
    ) as s:
        assert s.get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C


def test_telemetry_section_is_read_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(
        '[telemetry]\nenabled = true\nexporter = "console"\nservice_name = "shop"\n'
        'resource_attributes = { "deployment.environment" = "test" }\n'
    )
    settings = load_settings(path).telemetry
    assert (settings.enabled, settings.exporter, settings.service_name) == (True, "console", "shop")
    assert settings.resource_attributes == {"deployment.environment": "test"}
    path.write_text('[telemetry]\nexporter = "zipkin"\nendpiont = "x"\n')
    with pytest.raises(ConfigurationError) as raised:
        load_settings(path)
    assert "telemetry.exporter" in str(raised.value)
    assert "did you mean `endpoint`?" in str(raised.value)


def test_unknown_telemetry_variable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORKER_TELEMETRY__ENABLED", "true")
    assert load_settings().telemetry.enabled
    monkeypatch.setenv("WORKER_TELEMETRY__EXPORTR", "console")
    with pytest.raises(ConfigurationError, match="WORKER_TELEMETRY__EXPORTER"):
        load_settings()


def test_enabled_without_the_extra_is_a_start_up_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """With OpenTelemetry not importable, enabling telemetry fails with one clear line naming
    the extra, rather than running untraced."""
    for name in [m for m in sys.modules if m.startswith("opentelemetry")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(TelemetryUnavailableError, match=r"worker\[telemetry\]"):
        start_telemetry(TelemetrySettings(enabled=True))
    with pytest.raises(TelemetryUnavailableError, match=r"worker\[telemetry\]"):
        tracing.start()
    assert tracing.active() is None
    assert start_telemetry(TelemetrySettings()) is None  # not enabled: nothing needed


def test_console_exporter_writes_one_span_a_line_to_the_endpoint_file(tmp_path: Path) -> None:
    """``exporter = "console"`` with ``endpoint`` appends each span, as it ends, to that file;
    ``service_name`` and ``resource_attributes`` name the resource."""
    out = tmp_path / "spans.jsonl"
    settings = TelemetrySettings(
        enabled=True,
        exporter="console",
        endpoint=str(out),
        service_name="shop",
        resource_attributes={"deployment.environment": "test"},
    )
    telemetry = start_telemetry(settings)
    assert telemetry is not None
    try:
        active = tracing.active()
        assert active is not None
        with active.span("request", {"k": "v"}):
            pass
    finally:
        telemetry.shutdown()
    assert tracing.active() is None
    [line] = out.read_text().splitlines()
    span = json.loads(line)
    assert span["name"] == "request" and span["attributes"] == {"k": "v"}
    assert span["resource"]["attributes"]["service.name"] == "shop"
    assert span["resource"]["attributes"]["deployment.environment"] == "test"


def test_otel_variables_win_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` win over ``service_name`` and
    ``resource_attributes``."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    settings = TelemetrySettings(
        enabled=True,
        exporter="console",
        endpoint=str(tmp_path / "spans.jsonl"),
        service_name="shop",
        resource_attributes={"deployment.environment": "test", "team": "orders"},
    )
    telemetry = start_telemetry(settings)
    assert telemetry is not None
    telemetry.shutdown()
    attributes = telemetry.tracer_provider.resource.attributes
    assert attributes["service.name"] == "from-env"
    assert attributes["deployment.environment"] == "prod"
    assert attributes["team"] == "orders"
