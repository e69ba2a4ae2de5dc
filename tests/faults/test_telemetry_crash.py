"""A worker killed (SIGKILL) in the middle of a message: the process that handles the message
again does so in the trace of the request that wrote it, and so does what its handler writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from tests.faults._support import Workers
from worker import MessageStore, NewMessage
from worker.store import tracing

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio

CONFIG = Path(__file__).resolve().parent / "app" / "traced.toml"


@pytest.fixture
def traced() -> Iterator[tracing.Tracing]:
    provider = TracerProvider()
    try:
        yield tracing.start(provider)
    finally:
        tracing.stop()
        provider.shutdown()


def spans_in(path: Path) -> list[dict[str, Any]]:
    """The spans the console exporter wrote, one JSON object a line."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_the_message_handled_again_after_a_kill_joins_the_request_trace(
    store: MessageStore,
    database_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    traced: tracing.Tracing,
) -> None:
    """The first worker logs ``holding`` inside the message's span (its trace id on the line)
    and is killed there; the second handles the message again: its handling span (exported
    by that process) is the child of the request's span, in the request's trace, and the
    receipt it writes carries that trace."""
    out, hold = tmp_path / "spans.jsonl", tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv("WORKER_TELEMETRY__ENDPOINT", str(out))
    monkeypatch.setenv("TRACED_HOLD", str(hold))
    with traced.tracer.start_as_current_span("request") as span:
        await store.write("order-o1", NewMessage("Ordered", {"order": "o1"}))
        context = span.get_span_context()
    trace_id, request_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
    workers = Workers(database_dsn, tmp_path, config=CONFIG)
    try:
        first = await workers.start()
        await first.wait_logged("holding")
        [holding] = [e for e in first.events() if e.get("event") == "holding"]
        assert holding["trace_id"] == trace_id, first.tail()
        await first.kill()
        assert not any(s["name"] == "handle Ordered" for s in spans_in(out)), first.tail()
        hold.unlink()
        second = await workers.run_until_caught_up()
    finally:
        await workers.kill_all()
    [handled] = [s for s in spans_in(out) if s["name"] == "handle Ordered"]
    assert handled["context"]["trace_id"] == f"0x{trace_id}", second.tail()
    assert handled["parent_id"] == f"0x{request_id}"
    assert handled["attributes"]["worker.outcome"] == "handled"
    assert handled["resource"]["attributes"]["service.name"] == "traced-worker"
    [receipt] = await store.read_stream("receipt-o1")
    assert receipt.metadata is not None
    assert receipt.metadata["traceparent"].split("-")[1] == trace_id
    assert receipt.metadata["traceparent"].split("-")[2] == handled["context"]["span_id"][2:]
