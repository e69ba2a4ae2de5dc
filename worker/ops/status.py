"""What ``worker status`` shows: every consumer's position, lag, state, owner and parked count;
and ``worker processes``: every process manager's instances and deadlines."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from worker.engine import pauses, process_queries
from worker.engine import queries as q
from worker.engine.dead_letters import PostgresParkedMessages
from worker.engine.deadlines import DeadlineCounts, PostgresDeadlines
from worker.engine.state import ConsumerState
from worker.read import generations
from worker.store.message_store import MessageStore

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    import asyncpg

    from worker.domain import Domain
    from worker.engine.names import ConsumerName
    from worker.engine.subscriber import Subscriber


@dataclass(frozen=True)
class ConsumerStatus:
    """One consumer as ``worker status`` reports it."""

    consumer: str
    category: str
    position: int
    head: int
    lag_messages: int
    lag_seconds: float
    state: str
    leaseholder: str | None
    parked: int
    pause_reason: str | None = None  # given to `worker pause --reason`
    concurrency: int = 1  # partitions of a batch its subscriber handles at once

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _known_consumers(
    domain: Domain, building: dict[str, int]
) -> list[tuple[ConsumerName, Subscriber]]:
    found = []
    for subscriber in domain.subscribers:
        for slot in subscriber.slots():
            found.append((slot.consumer, subscriber))
            if subscriber.name in building:
                found.append((slot.consumer.building(building[subscriber.name]), subscriber))
    return found


def _state(
    held: bool,
    reported: str | None,
    rebuilding: bool,
    caught_up: bool,
    ahead: bool,
    paused: bool,
    due: bool = False,
    lapsed: bool = False,
) -> ConsumerState:
    if ahead:
        return ConsumerState.AHEAD
    if reported == ConsumerState.STOPPED:
        return ConsumerState.STOPPED
    if paused:
        return ConsumerState.PAUSED
    if not held and due:
        return ConsumerState.REBUILD_DUE
    if lapsed and not rebuilding:  # its holder stopped renewing it without giving it up
        return ConsumerState.DISCONNECTED
    if not held:
        return ConsumerState.REBUILD_PAUSED if rebuilding else ConsumerState.NOT_RUNNING
    if rebuilding:
        return ConsumerState.REBUILDING
    return ConsumerState.CAUGHT_UP if caught_up else ConsumerState.RUNNING


async def _rebuild_due(pool: asyncpg.Pool[Any], domain: Domain) -> set[str]:
    """Projections whose live tables no longer fit the code: a worker does not run them."""
    found = set()
    for subscriber in domain.subscribers:
        reason = await generations.due(pool, subscriber.projection)
        if reason is not None and reason.blocking:
            found.add(subscriber.name)
    return found


async def consumer_status(pool: asyncpg.Pool[Any], domain: Domain) -> list[ConsumerStatus]:
    """The status of every consumer the domain defines (and any rebuild in progress)."""
    store = MessageStore(pool)
    positions = {r[0]: (r[1], r[2]) for r in await pool.fetch(q.STATUS_POSITIONS)}
    leases = {r["consumer"]: r for r in await pool.fetch(q.STATUS_LEASES)}
    parked = await PostgresParkedMessages(pool).counts()
    building = await generations.building(pool)
    paused = await pauses.paused(pool)
    due = await _rebuild_due(pool, domain)
    now = datetime.now(UTC)
    report = []
    for consumer, subscriber in _known_consumers(domain, building):
        name = str(consumer)
        position, refill_to = positions.get(name, (0, None))
        head = await store.category_head(consumer.category) or 0
        lag, oldest = await store.lag(consumer.category, position)
        lease = leases.get(name)
        held = bool(lease and lease["held"])
        state = _state(
            held,
            lease["state"] if lease else None,
            consumer.is_building or refill_to is not None,
            lag == 0,
            position > head,
            name in paused,
            subscriber.name in due and not consumer.is_building,
            lapsed=bool(lease and not held and lease["unreleased"]),
        )
        report.append(
            ConsumerStatus(
                consumer=name,
                category=consumer.category,
                position=position,
                head=head,
                lag_messages=lag,
                lag_seconds=0.0 if oldest is None else round((now - oldest).total_seconds(), 3),
                state=state.label,
                leaseholder=lease["owner"] if held and lease else None,
                parked=parked.get(name, 0),
                pause_reason=paused[name]["reason"] if name in paused else None,
                concurrency=subscriber.options.concurrency,
            )
        )
    return report


@dataclass(frozen=True)
class Frame:
    """One look at every consumer in ``worker status --watch``: when, what, and how fast each
    moved since the previous look (messages per second; ``None`` on the first)."""

    at: datetime
    consumers: list[ConsumerStatus]
    rates: dict[str, float | None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "consumers": [{**c.as_dict(), "rate": self.rates[c.consumer]} for c in self.consumers],
        }


async def watch(
    pool: asyncpg.Pool[Any], domain: Domain, interval: float, count: int | None = None
) -> AsyncGenerator[Frame, None]:
    """A ``Frame`` every ``interval`` seconds (``count`` of them, or until cancelled)."""
    store = MessageStore(pool)
    before: dict[str, int] = {}
    looked = 0.0
    shown = 0
    while count is None or shown < count:
        now = anyio.current_time()
        consumers = await consumer_status(pool, domain)
        rates: dict[str, float | None] = {}
        for c in consumers:
            previous = before.get(c.consumer)
            if previous is None or now <= looked:
                rates[c.consumer] = None
            elif c.position <= previous:
                rates[c.consumer] = 0.0
            else:
                moved = await store.count_between(c.category, previous, c.position)
                rates[c.consumer] = round(moved / (now - looked), 1)
        before, looked = {c.consumer: c.position for c in consumers}, now
        yield Frame(datetime.now(UTC), consumers, rates)
        shown += 1
        if count is None or shown < count:
            await anyio.sleep_until(now + interval)


@dataclass(frozen=True)
class ProjectionStatus:
    """One projector as ``worker projections`` reports it."""

    name: str
    version: str | None  # in code
    stored_version: str | None  # of the live generation's tables
    categories: list[str]
    tables: list[str]  # the views readers query (the read models' __table__)
    live: int | None  # live generation (None: no read models, or not installed yet)
    building: int | None  # generation a rebuild is filling
    lag: int  # messages its live consumers have yet to handle
    states: list[str]  # its live consumers' states

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def projection_status(pool: asyncpg.Pool[Any], domain: Domain) -> list[ProjectionStatus]:
    """Every projector of the domain: version, categories, tables, generations, lag."""
    consumers = {c.consumer: c for c in await consumer_status(pool, domain)}
    report = []
    for subscriber in domain.subscribers:
        if subscriber.kind != "projector":
            continue
        found = await generations.state(pool, subscriber.name)
        live = [consumers[slot.name] for slot in subscriber.slots() if slot.name in consumers]
        report.append(
            ProjectionStatus(
                name=subscriber.name,
                version=subscriber.version,
                stored_version=found[2] if found else None,
                categories=list(subscriber.categories),
                tables=[model.__table__ for model in subscriber.read_models],
                live=found[0] if found else None,
                building=found[1] if found else None,
                lag=sum(c.lag_messages for c in live),
                states=sorted({c.state for c in live}),
            )
        )
    return report


@dataclass(frozen=True)
class ProcessStatus:
    """One process manager as ``worker processes`` reports it."""

    name: str
    category: str  # of its instances' streams
    categories: list[str]  # it reads
    instances: int
    active: int  # not ended
    deadlines_pending: int
    deadlines_due: int  # pending and due now (a running worker delivers them)
    deadlines_fired: int
    deadlines_cancelled: int
    deadlines_failed: int  # given up after max_attempts (see the worker's log)
    states: list[str]  # its consumers' states

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def process_status(pool: asyncpg.Pool[Any], domain: Domain) -> list[ProcessStatus]:
    """Every process manager of the domain: its instances, deadlines and consumers' states."""
    processes = [s for s in domain.subscribers if s.process is not None]
    if not processes:
        return []
    consumers = {c.consumer: c for c in await consumer_status(pool, domain)}
    counts = {c.process: c for c in await PostgresDeadlines(pool).counts()}
    report = []
    for subscriber in processes:
        category = subscriber.process.category
        instances, active = await pool.fetchrow(process_queries.PROCESS_INSTANCES, category) or (
            0,
            0,
        )
        found = counts.get(subscriber.name, DeadlineCounts(subscriber.name, 0, 0, 0, 0, 0))
        live = [consumers[slot.name] for slot in subscriber.slots() if slot.name in consumers]
        report.append(
            ProcessStatus(
                name=subscriber.name,
                category=category,
                categories=list(subscriber.categories),
                instances=instances,
                active=active,
                deadlines_pending=found.pending,
                deadlines_due=found.due,
                deadlines_fired=found.fired,
                deadlines_cancelled=found.cancelled,
                deadlines_failed=found.failed,
                states=sorted({c.state for c in live}),
            )
        )
    return report
