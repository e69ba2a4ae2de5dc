"""Probes, metrics and systemd's readiness notification of a running worker."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_engine import FAST, Deposited, deposit, ledger_domain
from worker import Context, Domain, Runner, handle
from worker.ops.health import watchdog_interval
from worker.ops.runner import probes_of

if TYPE_CHECKING:
    from pathlib import Path

    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio


def probes(runner: Any) -> Any:
    """The runner's probes server, once started."""
    server = probes_of(runner)
    assert server is not None
    return server


async def get(port: int, path: str) -> tuple[int, str]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while True:
            try:
                data += await stream.receive()
            except anyio.EndOfStream:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def test_probes_and_metrics_follow_the_consumers(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """Ready while consumers run; metrics count handled messages and lag; not ready once a
    consumer halted on a failure."""
    await deposit(store, accounts=3, per_account=4)
    settings = FAST.model_copy(update={"http_port": 0, "http_host": "127.0.0.1"})
    runner = Runner(
        ledger_domain(lambda e: e.account == "a1" and e.n == 5, on_failure="stop"),
        database_dsn,
        settings,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        with anyio.fail_after(10):
            while (
                probes_of(runner) is None
                or not runner.result.consumers
                or (runner.result.consumers[0].state != "caught_up")
            ):
                await anyio.sleep(0.01)
        port = probes(runner).port
        assert await get(port, "/healthz") == (200, "ok\n")
        status, body = await get(port, "/readyz")
        assert status == 200 and body.startswith("ready: ledger:acct=")
        status, metrics = await get(port, "/metrics")
        assert status == 200
        assert 'worker_messages_handled_total{consumer="ledger:acct"} 12.0' in metrics
        assert 'worker_consumer_lag{consumer="ledger:acct"} 0.0' in metrics
        assert 'worker_consumer_up{consumer="ledger:acct"} 1.0' in metrics
        assert (await get(port, "/nope"))[0] == 404

        await deposit(store, accounts=2, per_account=6)  # a1's sixth deposit (n=5) halts it
        with anyio.fail_after(10):
            while runner.result.consumers[0].state != "stopped":
                await anyio.sleep(0.01)
        status, body = await get(port, "/readyz")
        assert status == 503 and "ledger:acct=stopped" in body
        status, metrics = await get(port, "/metrics")
        assert 'worker_consumer_up{consumer="ledger:acct"} 0.0' in metrics
        runner.request_stop()


async def test_systemd_hears_ready_then_stopping(
    store: MessageStore, database_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        await deposit(store, accounts=1, per_account=2)
        await Runner(ledger_domain(), database_dsn, FAST).run(
            until_caught_up=True, handle_signals=False
        )
        assert [sock.recv(64), sock.recv(64)] == [b"READY=1", b"STOPPING=1"]


async def test_systemd_watchdog_hears_from_the_event_loop_repeatedly(
    store: MessageStore, database_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With WATCHDOG_USEC set (here 0.2 s), a running worker sends WATCHDOG=1 at half that
    interval, between READY=1 and STOPPING=1."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "200000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        await deposit(store, accounts=1, per_account=2)
        runner = Runner(ledger_domain(), database_dsn, FAST)
        heard: list[bytes] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: runner.run(handle_signals=False))
            with anyio.fail_after(10):
                while heard.count(b"WATCHDOG=1") < 4:
                    try:
                        heard.append(sock.recv(64))
                    except BlockingIOError:
                        await anyio.sleep(0.01)
            runner.request_stop()
        while True:
            try:
                heard.append(sock.recv(64))
            except BlockingIOError:
                break
    assert b"READY=1" in heard and heard[-1] == b"STOPPING=1", heard
    assert set(heard) == {b"READY=1", b"WATCHDOG=1", b"STOPPING=1"}, heard


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "self"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_systemds_for_this_process_only(
    environ: dict[str, str], interval: float | None
) -> None:
    if environ.get("WATCHDOG_PID") == "self":
        environ = {**environ, "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(environ) == interval


async def test_metrics_time_batches_and_count_failures_per_consumer(
    store: MessageStore, database_dsn: str
) -> None:
    """Per consumer: one handling and one commit time per batch, the age of each batch's oldest
    message, and every failed attempt; and the process's own metrics beside them."""
    await deposit(store, accounts=2, per_account=3)
    settings = FAST.model_copy(update={"http_port": 0, "http_host": "127.0.0.1"})
    runner = Runner(ledger_domain(lambda e: e.account == "a1" and e.n == 1), database_dsn, settings)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        with anyio.fail_after(10):
            while probes_of(runner) is None or any(
                c.state != "caught_up" for c in runner.result.consumers
            ):
                await anyio.sleep(0.01)
        _, metrics = await get(probes(runner).port, "/metrics")
        runner.request_stop()
    samples = {
        (s.name, s.labels.get("le")): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.labels.get("consumer") in ("ledger:acct", None)
    }
    batches = samples[("worker_batch_handle_seconds_count", None)]
    assert batches >= 2  # the batch rolled back is not counted; those after the failure are
    assert samples[("worker_batch_commit_seconds_count", None)] == batches
    assert samples[("worker_event_age_seconds_count", None)] == batches
    assert samples[("worker_event_age_seconds_bucket", "+Inf")] == batches
    assert samples[("worker_batch_handle_seconds_sum", None)] > 0
    assert samples[("worker_handler_failures_total", None)] == 3  # max_attempts, then parked
    assert samples[("worker_messages_parked_total", None)] == 2  # a1's n=1, and n=2 behind it
    assert samples[("worker_transient_errors_total", None)] == 0
    assert samples[("worker_consumer_paused", None)] == 0
    assert ("process_cpu_seconds_total", None) in samples
    assert ("python_info", None) in samples


async def test_metrics_show_partitions_in_flight_and_the_committed_position(
    store: MessageStore, database_dsn: str
) -> None:
    """While a concurrent handler's partitions wait, the gauge counts them (up to its
    concurrency); once they are done it is 0, and the committed position is the handled one."""
    domain = Domain("test")
    domain.register_event(Deposited, category="acct")
    waiting: list[int] = []
    release = anyio.Event()

    @domain.event_handler(name="notifier", stream_categories=["acct"], concurrency=4)
    class Notifier:
        @handle(Deposited)
        async def deposited(self, event: Deposited, ctx: Context) -> None:
            waiting.append(event.n)
            await release.wait()

    await deposit(store, accounts=6, per_account=1)
    settings = FAST.model_copy(update={"http_port": 0, "http_host": "127.0.0.1"})
    runner = Runner(domain, database_dsn, settings)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        with anyio.fail_after(10):
            while probes_of(runner) is None or len(waiting) < 4:
                await anyio.sleep(0.01)
        _, during = await get(probes(runner).port, "/metrics")
        release.set()
        with anyio.fail_after(10):
            while runner.result.consumers[0].state != "caught_up":
                await anyio.sleep(0.01)
        _, after = await get(probes(runner).port, "/metrics")
        runner.request_stop()
    head = await store.category_head("acct")
    assert 'worker_partitions_in_flight{consumer="notifier:acct"} 4.0' in during
    assert 'worker_partitions_in_flight{consumer="notifier:acct"} 0.0' in after
    assert f'worker_consumer_committed_position{{consumer="notifier:acct"}} {head:.1f}' in after
    assert f'worker_consumer_position{{consumer="notifier:acct"}} {head:.1f}' in after
