"""What ``worker status`` shows: every consumer's position, lag, state, owner and parked count."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from worker.engine import dead_letters
from worker.engine import queries as q
from worker.engine.state import ConsumerState
from worker.read import generations
from worker.store.message_store import MessageStore

if TYPE_CHECKING:
    import asyncpg

    from worker.domain import Domain
    from worker.engine.names import ConsumerName


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _known_consumers(domain: Domain, building: dict[str, int]) -> list[ConsumerName]:
    found = []
    for subscriber in domain.subscribers:
        for slot in subscriber.slots():
            found.append(slot.consumer)
            if subscriber.name in building:
                found.append(slot.consumer.building(building[subscriber.name]))
    return found


def _state(
    held: bool, reported: str | None, rebuilding: bool, caught_up: bool, ahead: bool
) -> ConsumerState:
    if ahead:
        return ConsumerState.AHEAD
    if reported == ConsumerState.STOPPED:
        return ConsumerState.STOPPED
    if not held:
        return ConsumerState.REBUILD_PAUSED if rebuilding else ConsumerState.NOT_RUNNING
    if rebuilding:
        return ConsumerState.REBUILDING
    return ConsumerState.CAUGHT_UP if caught_up else ConsumerState.RUNNING


async def consumer_status(pool: asyncpg.Pool[Any], domain: Domain) -> list[ConsumerStatus]:
    """The status of every consumer the domain defines (and any rebuild in progress)."""
    store = MessageStore(pool)
    positions = {r[0]: (r[1], r[2]) for r in await pool.fetch(q.STATUS_POSITIONS)}
    leases = {r["consumer"]: r for r in await pool.fetch(q.STATUS_LEASES)}
    parked = await dead_letters.counts(pool)
    building = await generations.building(pool)
    now = datetime.now(UTC)
    report = []
    for consumer in _known_consumers(domain, building):
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
            )
        )
    return report
