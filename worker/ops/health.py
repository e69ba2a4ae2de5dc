"""Health probes and Prometheus metrics over HTTP, and systemd's notifications (readiness and
the watchdog).

``GET /healthz`` answers 200 while the worker's event loop runs (liveness); ``GET /readyz``
answers 200 once every consumer runs, is caught up or stands by for a lease held elsewhere, and
503 while it starts, while an in-place rebuild refills a projection, when a consumer's position
is beyond its category's head, when a consumer halted on a failure, when its projection is held
back until rebuilt, or when a consumer has been without its database for ``[worker]
unready_after`` seconds (readiness);
``GET /metrics`` is the Prometheus text format. Metrics are read from the consumers when
scraped, so the hot path pays nothing for them.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from worker.engine import lease
from worker.engine.state import READY, UP, ConsumerState
from worker.ops.process_metrics import ProcessCollector

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from anyio.abc import SocketStream, TaskStatus

    from worker.engine.consumer import Consumer
    from worker.store.message_store import MessageStore

log = structlog.get_logger("worker.health")


def ready(consumers: list[Consumer], unready_after: float = 30.0) -> bool:
    """True when no consumer is starting or halted, nor has been without its database for
    ``unready_after`` seconds (a shorter outage is ridden out: it reconnects on its own)."""
    return bool(consumers) and all(_ready(c, unready_after) for c in consumers)


def _ready(consumer: Consumer, unready_after: float) -> bool:
    if consumer.state == ConsumerState.DISCONNECTED:
        return consumer.lease.contact.down_for() < unready_after
    return consumer.state in READY


# The metric families with one sample a consumer: name -> (kind, documentation).
_PER_CONSUMER: dict[str, tuple[type[Any], str]] = {
    "worker_messages_handled": (CounterMetricFamily, "Messages applied by this process"),
    "worker_messages_parked": (CounterMetricFamily, "Messages parked by this process"),
    "worker_consumer_position": (
        GaugeMetricFamily,
        "Global position last handled (committed, or within [worker] position_interval)",
    ),
    "worker_consumer_committed_position": (GaugeMetricFamily, "Global position last committed"),
    "worker_consumer_lag": (GaugeMetricFamily, "Category head minus position (global positions)"),
    "worker_consumer_up": (GaugeMetricFamily, "1 while the consumer runs or is caught up"),
    "worker_consumer_paused": (
        GaugeMetricFamily,
        "1 while an operator has the consumer paused (worker pause)",
    ),
    "worker_consumer_lag_seconds": (
        GaugeMetricFamily,
        "Now minus the time of the oldest message not yet handled at the last read (or of "
        "that read, when it found nothing new); grows while the consumer cannot read",
    ),
    "worker_lease_takeovers": (
        CounterMetricFamily,
        "Leases this process took over from a holder that stopped renewing them",
    ),
    "worker_batch_handle_seconds": (
        HistogramMetricFamily,
        "Seconds a batch's handlers and read-model writes took",
    ),
    "worker_batch_commit_seconds": (
        HistogramMetricFamily,
        "Seconds a batch's position commit and COMMIT took",
    ),
    "worker_event_age_seconds": (
        HistogramMetricFamily,
        "Age of a batch's oldest message when it was handled (now minus its time in the store)",
    ),
    "worker_handler_failures": (
        CounterMetricFamily,
        "Failed attempts of a message's handlers (each retry counts)",
    ),
    "worker_transient_errors": (
        CounterMetricFamily,
        "Batches tried again after a transient error (connection lost, serialization "
        "failure, deadlock, timeout)",
    ),
    "worker_partitions_in_flight": (
        GaugeMetricFamily,
        "Partitions of a batch being handled at once (concurrency > 1)",
    ),
}


def _per_consumer(*names: str) -> list[Any]:
    """Empty families of these names (``_PER_CONSUMER``), labelled by consumer."""
    return [_PER_CONSUMER[n][0](n, _PER_CONSUMER[n][1], labels=["consumer"]) for n in names]


def database_up(consumers: list[Consumer]) -> bool:
    """Whether every consumer's last round trip reached the database."""
    return all(c.lease.contact.up for c in consumers)


class ConsumerCollector:
    """Prometheus metrics read from the consumers at scrape time."""

    def __init__(self, consumers: list[Consumer]) -> None:
        self._consumers = consumers
        self.heads: dict[str, int] = {}

    def collect(self) -> Iterator[Any]:
        handled, parked, position, committed, lag, up, paused, lag_seconds, takeovers = (
            _per_consumer(
                "worker_messages_handled",
                "worker_messages_parked",
                "worker_consumer_position",
                "worker_consumer_committed_position",
                "worker_consumer_lag",
                "worker_consumer_up",
                "worker_consumer_paused",
                "worker_consumer_lag_seconds",
                "worker_lease_takeovers",
            )
        )
        for c in self._consumers:
            handled.add_metric([c.name], c.processed)
            parked.add_metric([c.name], c.parked_count)
            position.add_metric([c.name], c.position)
            committed.add_metric([c.name], c.committed)
            if c.category in self.heads:
                lag.add_metric([c.name], max(self.heads[c.category] - c.position, 0))
            up.add_metric([c.name], 1 if c.state in UP else 0)
            paused.add_metric([c.name], 1 if c.paused else 0)
            takeovers.add_metric([c.name], lease.takeovers[c.name])
            seconds = c.lag_seconds()
            if seconds is not None and c.state != ConsumerState.WAITING:
                lag_seconds.add_metric([c.name], round(seconds, 3))
        yield from (handled, parked, position, committed, lag, up, paused, takeovers, lag_seconds)
        yield from self._states()
        yield from self._batches()

    def _states(self) -> Iterator[Any]:
        """Each consumer's state (1 for the one it is in), and whether the database answers."""
        states = GaugeMetricFamily(
            "worker_consumer_state",
            "1 for the state the consumer is in, 0 for the others",
            labels=["consumer", "state"],
        )
        for c in self._consumers:
            current = c.state
            for state in ConsumerState:
                states.add_metric([c.name, state.value], 1 if state == current else 0)
        yield states
        yield GaugeMetricFamily(
            "worker_database_up",
            "1 while every consumer's last round trip reached the database, else 0",
            value=1 if database_up(self._consumers) else 0,
        )

    def _batches(self) -> Iterator[Any]:
        """What the consumers measured about their batches (``worker.engine.stats``)."""
        handle, commit, age, failures, transient, in_flight = _per_consumer(
            "worker_batch_handle_seconds",
            "worker_batch_commit_seconds",
            "worker_event_age_seconds",
            "worker_handler_failures",
            "worker_transient_errors",
            "worker_partitions_in_flight",
        )
        for c in self._consumers:
            stats = c.stats
            in_flight.add_metric([c.name], stats.in_flight)
            for family, histogram in (
                (handle, stats.handle),
                (commit, stats.commit),
                (age, stats.age),
            ):
                family.add_metric([c.name], histogram.cumulative(), histogram.total)
            failures.add_metric([c.name], stats.handler_failures)
            transient.add_metric([c.name], stats.transient_errors)
        yield from (handle, commit, age, failures, transient, in_flight)


class HealthServer:
    """A small HTTP server for probes and metrics, run in the runner's task group."""

    def __init__(
        self,
        consumers: list[Consumer],
        store: MessageStore,
        host: str,
        port: int,
        *,
        unready_after: float = 30.0,
    ) -> None:
        self._consumers = consumers
        self._unready_after = unready_after
        self._store = store
        self._host = host
        self._port = port
        self._collector = ConsumerCollector(consumers)
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._collector)
        self._processes = ProcessCollector(consumers)
        self._registry.register(self._processes)
        for default in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self._registry.register(default)  # process_*, python_info, python_gc_*
        self.port = port

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``port`` is the bound port once started (0 picks one)."""
        listener = await anyio.create_tcp_listener(local_host=self._host, local_port=self._port)
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            log.info("health and metrics listening", host=self._host, port=self.port)
            task_status.started()
            await listener.serve(self._handle)

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            with anyio.move_on_after(5):
                request = await self._read_request(stream)
                status, body, kind = await self._respond(request)
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                await stream.send(head.encode() + body)

    @staticmethod
    async def _read_request(stream: SocketStream) -> str:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 8192:
            try:
                data += await stream.receive(4096)
            except anyio.EndOfStream:
                break
        return data.split(b"\r\n", 1)[0].decode("latin-1")

    async def _respond(self, request_line: str) -> tuple[str, bytes, str]:
        parts = request_line.split()
        path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
        if parts[:1] != ["GET"]:
            return "405 Method Not Allowed", b"GET only\n", "text/plain"
        if path == "/healthz":
            return "200 OK", b"ok\n", "text/plain"
        if path == "/readyz":
            states = ", ".join(f"{c.name}={c.state}" for c in self._consumers)
            if ready(self._consumers, self._unready_after):
                return "200 OK", f"ready: {states}\n".encode(), "text/plain"
            return "503 Service Unavailable", f"not ready: {states}\n".encode(), "text/plain"
        if path == "/metrics":
            await self._refresh_heads()
            await self._processes.refresh(self._store)
            return "200 OK", generate_latest(self._registry), "text/plain; version=0.0.4"
        return "404 Not Found", b"not found\n", "text/plain"

    async def _refresh_heads(self) -> None:
        for category in {c.category for c in self._consumers}:
            try:
                self._collector.heads[category] = await self._store.category_head(category) or 0
            except Exception as error:  # metrics must not fail a scrape for a lost connection
                log.warning("category head unavailable for metrics", error=str(error))


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between ``WATCHDOG=1`` notifications: half of systemd's ``WATCHDOG_USEC``, when
    it set one for this process (``WATCHDOG_PID``, when given, is ours); else ``None``."""
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2 / 1_000_000


async def keep_watchdog(interval: float) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` from the event loop itself, until cancelled: a
    loop that hangs (a handler blocking it, a deadlock) sends nothing, and systemd restarts the
    service once ``WatchdogSec`` has passed. A wake-up later than a whole interval means the
    loop was blocked that long: logged, since it came close to a restart."""
    due = anyio.current_time()
    while True:
        late = anyio.current_time() - due
        if late > interval:
            log.warning("event loop was blocked", seconds=round(late, 3), watchdog=interval * 2)
        notify_systemd("WATCHDOG=1")
        due = anyio.current_time() + interval
        await anyio.sleep_until(due)


def notify_systemd(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd's notify socket, if it gave one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True
