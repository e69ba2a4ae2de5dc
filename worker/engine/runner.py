"""The runner: every consumer in one task group, until signalled or caught up.

Shutdown order: stop reading (stop event), let each batch in flight finish within
``shutdown_deadline`` (then cancel it: its transaction rolls back, nothing is lost), release
leases, close their connections and the pool. A second signal cancels at once.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker.engine import setup
from worker.engine.closing import close_all
from worker.engine.factory import build_consumer
from worker.engine.lifecycle import Step, Until
from worker.engine.rebuild import rebuild
from worker.engine.state import ConsumerState
from worker.engine.wakeups import Listener, Waker
from worker.errors import ConfigurationError
from worker.read import generations
from worker.store.database import Database, create_pool
from worker.store.installer import check_installed
from worker.store.message_store import MessageStore

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.abc import TaskGroup

    from worker.engine.consumer import Consumer
    from worker.engine.services import Service
    from worker.engine.settings import EngineSettings
    from worker.engine.subscriber import Subscriber, Subscriptions
    from worker.read.generations import RebuildDue

log = structlog.get_logger("worker.runner")


@dataclass
class RunResult:
    """How a run ended."""

    consumers: list[Consumer] = field(default_factory=list)
    signalled: bool = False
    forced: bool = False
    needs_rebuild: list[str] = field(default_factory=list)

    @property
    def ahead(self) -> list[Consumer]:
        """Consumers whose position is beyond their category's head (set by an operator)."""
        return [c for c in self.consumers if c.head is not None]

    @property
    def paused(self) -> list[str]:
        """Names of consumers an operator paused (``worker pause``)."""
        return [c.name for c in self.consumers if c.paused]

    @property
    def stopped(self) -> list[str]:
        """Names of consumers halted by the ``stop`` failure action."""
        return [c.name for c in self.consumers if c.state == ConsumerState.STOPPED]


def _database(target: str | Database, settings: EngineSettings) -> Database:
    """How the runner connects: a bare DSN with the settings' read-model schema (and the
    default timeout); a ``Database`` as it is, if it names the same read-model schema."""
    if not isinstance(target, Database):
        return Database(target, read_model_schema=settings.read_model_schema)
    if target.read_model_schema != settings.read_model_schema:
        raise ConfigurationError(
            f"the runner's Database puts read-model schema {target.read_model_schema!r} on the "
            f"search path, but [worker] read_model_schema is {settings.read_model_schema!r}: "
            "make them the same"
        )
    return target


class Runner:
    """Runs a domain's consumers against one database, and ``services`` beside them.

    ``worker.Runner`` (``worker.ops.runner``) gives it what a deployed process serves around
    it: probes, metrics and systemd notifications (``worker.engine.services``).
    """

    def __init__(
        self,
        domain: Subscriptions,
        dsn: str | Database,
        settings: EngineSettings,
        *,
        only: list[str] | None = None,
        services: Sequence[Service] = (),
    ) -> None:
        self.domain = domain
        self.services = tuple(services)
        self.database = _database(dsn, settings)
        self.settings = settings
        self.only = only
        self.stop = anyio.Event()
        self._until = Until(self.stop)  # set once per run (``run``)
        self.waker = Waker()
        self.result = RunResult()
        self._consumers_scope = anyio.CancelScope()
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        self._no_auto_rebuild: set[str] = set()

    @property
    def dsn(self) -> str:
        """The DSN the runner connects to (set it to move the runner to another server)."""
        return self.database.dsn

    @dsn.setter
    def dsn(self, dsn: str) -> None:
        self.database = replace(self.database, dsn=dsn)

    def _consumers(self, pool: Any, store: MessageStore) -> list[Consumer]:
        return [
            build_consumer(
                slot,
                dsn=self.database,
                pool=pool,
                settings=self.settings,
                waker=self.waker,
                store=store,
            )
            for subscriber in self.domain.subscribers
            for slot in subscriber.slots()
            if self.only is None or slot.name in self.only or subscriber.name in self.only
        ]

    async def _services(self, tg: TaskGroup, store: MessageStore) -> None:
        """Start what runs beside the consumers (``services``)."""
        for service in self.services:
            await service.start(tg, self.result.consumers, store)

    def _notify(self, state: str) -> None:
        """Tell the services about the run (``READY=1``, ``STOPPING=1``)."""
        for service in self.services:
            service.notify(state)

    def request_stop(self) -> None:
        """Stop reading; batches in flight finish (within the deadline)."""
        self.stop.set()
        self.waker.wake_all()

    async def run(self, *, until_caught_up: bool = False, handle_signals: bool = True) -> RunResult:
        """Run until signalled (or, with ``until_caught_up``, until every consumer is)."""
        self._until = Until(self.stop, until_caught_up)
        slots = sum(len(s.slots()) for s in self.domain.subscribers)
        # A batch left idle in its transaction longer than a lease lasts belongs to a frozen
        # process: the server ends it, so its row locks never block the one that took over.
        # Up to three connections a consumer: the batch being handled, the one committing
        # behind it, the next one being read.
        pool = await create_pool(
            self.database,
            min_size=1,
            max_size=3 * slots + 2,
            idle_in_transaction_timeout=self.settings.lease_ttl,
        )
        try:
            store = MessageStore(pool)
            self.result.consumers = self._consumers(pool, store)
            due = await self._prepare_opening_leases(pool)
            async with anyio.create_task_group() as outer:
                if handle_signals:
                    outer.start_soon(self._watch_signals, outer.cancel_scope)
                if self.settings.notify and not until_caught_up:
                    await outer.start(Listener(self.database, self.waker).run)
                await self._services(outer, store)
                outer.start_soon(self._report)
                self._notify("READY=1")
                with self._consumers_scope:
                    async with anyio.create_task_group() as tg:
                        self._start(tg, pool, due)
                    if not until_caught_up and not self.stop.is_set():
                        # Every consumer halted: stay up (not ready) until told to stop, rather
                        # than exit and be restarted into the same failure.
                        log.error("every consumer has halted; waiting for a signal")
                        await self.stop.wait()
                self._notify("STOPPING=1")
                outer.cancel_scope.cancel()
        finally:
            await close_all(self.result.consumers, pool.close)
        return self.result

    def _start(self, tg: Any, pool: Any, due: dict[str, RebuildDue]) -> None:
        """Start the consumers; hold back those of projections whose tables no longer fit."""
        for name, reason in due.items():
            # Held back only when the live tables no longer fit the code; after a version
            # change alone the live generation keeps being updated until the switch.
            held = [c for c in self.result.consumers if c.subscriber.name == name]
            subscriber = held[0].subscriber
            if self.settings.auto_rebuild and name not in self._no_auto_rebuild:
                waiting = held if reason.blocking else []
                tg.start_soon(self._rebuild_then_run, pool, subscriber, waiting)
            elif reason.blocking:
                log.error(
                    "projection not started: it must be rebuilt first",
                    projection=name,
                    reason=reason.reason,
                )
                self.result.needs_rebuild.append(name)
                for consumer in held:  # (their lease connections, opened ahead)
                    consumer.take(Step.REBUILD_DUE)
                    tg.start_soon(consumer.close)
        for consumer in self.result.consumers:
            if consumer.subscriber.name in due and due[consumer.subscriber.name].blocking:
                continue
            tg.start_soon(self._run_consumer, consumer)

    async def _prepare_opening_leases(self, pool: Any) -> dict[str, RebuildDue]:
        """``_prepare``, while each consumer's lease connection opens (but those of group slots
        capped by ``max_group_slots``, which open theirs when they may take their lease), and the
        pool's second connection (a consumer that catches up reads its next batch ahead on
        another one)."""
        due: dict[str, RebuildDue] = {}
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            for consumer in self.result.consumers:
                if self._limiter(consumer) is None:  # (a capped group slot may wait for long)
                    tg.start_soon(consumer.lease.open)
            tg.start_soon(_open_another, pool)
            try:
                due = await self._prepare(pool)
            except Exception as error:  # raised as itself after the group, never in a group
                failure = error
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return due

    async def _prepare(self, pool: Any) -> dict[str, RebuildDue]:
        """Check the schema; make or find the read-model tables and each subscriber's
        ``setup(conn)`` (``worker.engine.setup``).

        Returns the projections due for a rebuild (their code changed since their tables were
        built). With ``auto_rebuild``, a projection this role may not rebuild (the runtime role
        creates no tables) is logged and handled as without it.
        """
        first: dict[str, Consumer] = {}
        for consumer in self.result.consumers:
            first.setdefault(consumer.subscriber.name, consumer)
        async with pool.acquire() as conn:
            await check_installed(conn)
            prepared = await setup.prepare(
                conn,
                [(c.subscriber, c.instance) for c in first.values()],
                self.settings.read_model_schema,
            )
            for name, reason in prepared.due.items():
                log.warning(reason.reason, projection=name, auto_rebuild=self.settings.auto_rebuild)
                if self.settings.auto_rebuild:
                    projection = first[name].subscriber.projection
                    user, lacking = await generations.rebuild_rights_missing(
                        conn, projection, in_place=False
                    )
                    if lacking:
                        log.error(
                            "cannot rebuild the projection automatically: this role may not "
                            "create its tables; run `worker rebuild` with the owner role",
                            projection=name,
                            role=user,
                            lacks=lacking,
                        )
                        self._no_auto_rebuild.add(name)
        return prepared.due

    async def _rebuild_then_run(
        self, pool: Any, subscriber: Subscriber, held: list[Consumer]
    ) -> None:
        """Rebuild a changed projection blue/green, then run its live consumers on the result.

        Until the switch, readers keep the old tables as they were.
        """
        with structlog.contextvars.bound_contextvars(projection=subscriber.name):
            await rebuild(self.database, pool, self.settings, subscriber)
        async with anyio.create_task_group() as tg:
            for consumer in held:
                tg.start_soon(self._run_consumer, consumer)

    def _limiter(self, consumer: Consumer) -> anyio.CapacityLimiter | None:
        """The shared cap on group slots of one (subscriber, category) in this process."""
        limit = self.settings.max_group_slots
        if limit is None or consumer.slot.member is None:
            return None
        key = consumer.subscriber.consumer_name(consumer.category)
        if key not in self._limiters:
            self._limiters[key] = anyio.CapacityLimiter(limit)
        return self._limiters[key]

    async def _run_consumer(self, consumer: Consumer) -> None:
        with structlog.contextvars.bound_contextvars(consumer=consumer.name):
            await consumer.run(self._until, limiter=self._limiter(consumer))

    async def _watch_signals(self, outer: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if not self.stop.is_set():
                    log.info(
                        "stopping: finishing batches in flight",
                        signal=signal.Signals(signum).name,
                        deadline=self.settings.shutdown_deadline,
                    )
                    self.result.signalled = True
                    self.request_stop()
                    self._consumers_scope.deadline = (
                        anyio.current_time() + self.settings.shutdown_deadline
                    )
                else:
                    log.warning("second signal: exiting at once")
                    self.result.forced = True
                    outer.cancel()
                    return

    async def _report(self, every: float = 5.0) -> None:
        """An info line every few seconds while consumers are making progress."""
        last = {c.name: c.processed for c in self.result.consumers}
        started = time.monotonic()
        while True:
            await anyio.sleep(every)
            total = sum(c.processed - last[c.name] for c in self.result.consumers)
            if total:
                log.info(
                    "progress",
                    messages=total,
                    rate=round(total / every),
                    elapsed=round(time.monotonic() - started, 1),
                    positions={c.name: c.position for c in self.result.consumers},
                )
            last = {c.name: c.processed for c in self.result.consumers}


async def _open_another(pool: Any) -> None:
    """Have the pool open a connection beside the one in use (best effort: a failure is met
    again, and reported, when a consumer needs it)."""
    try:
        async with pool.acquire():
            pass
    except Exception as error:
        log.debug("pool connection not opened ahead", error=str(error))
