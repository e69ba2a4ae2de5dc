"""What ``worker status`` shows: every consumer's position, lag, state, owner and parked count."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from worker.engine import dead_letters

if TYPE_CHECKING:
    import asyncpg

    from worker.domain import Domain

_POSITIONS = "SELECT consumer, position, refill_to FROM worker.positions"
# Held: renewed within its ttl by a session that still exists (a crashed holder's lease is
# free at once, see worker.lease).
_LEASES = """
SELECT consumer, owner, state,
       coalesce(expires_at > now(), false)
       AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.holder_pid) AS held
FROM worker.leases l
"""
_LAG = """
SELECT count(*), min(time AT TIME ZONE 'UTC')
FROM message_store.messages
WHERE message_store.category(stream_name) = $1 AND global_position > $2
"""
_HEAD = """
SELECT global_position FROM message_store.messages
WHERE message_store.category(stream_name) = $1 ORDER BY global_position DESC LIMIT 1
"""
_BUILDING = "SELECT name, building FROM worker.projections WHERE building IS NOT NULL"


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


def _known_consumers(domain: Domain, building: dict[str, int]) -> list[tuple[str, str]]:
    found = []
    for subscriber in domain.subscribers:
        for slot in subscriber.slots():
            found.append((slot.name, slot.category))
            if subscriber.name in building:
                found.append((f"{slot.name}#g{building[subscriber.name]}", slot.category))
    return found


def _state(held: bool, reported: str | None, rebuilding: bool, caught_up: bool, ahead: bool) -> str:
    if ahead:
        return "error: position beyond head"
    if reported == "stopped":
        return "stopped"
    if not held:
        return "rebuild paused" if rebuilding else "not running"
    if rebuilding:
        return "rebuilding"
    return "caught up" if caught_up else "running"


async def consumer_status(pool: asyncpg.Pool[Any], domain: Domain) -> list[ConsumerStatus]:
    """The status of every consumer the domain defines (and any rebuild in progress)."""
    positions = {r[0]: (r[1], r[2]) for r in await pool.fetch(_POSITIONS)}
    leases = {r["consumer"]: r for r in await pool.fetch(_LEASES)}
    parked = await dead_letters.counts(pool)
    building = {r[0]: r[1] for r in await pool.fetch(_BUILDING)}
    now = datetime.now(UTC)
    report = []
    for name, category in _known_consumers(domain, building):
        position, refill_to = positions.get(name, (0, None))
        head = await pool.fetchval(_HEAD, category) or 0
        row = await pool.fetchrow(_LAG, category, position)
        assert row is not None  # an aggregate always returns a row
        lag, oldest = row[0], row[1]
        lease = leases.get(name)
        held = bool(lease and lease["held"])
        report.append(
            ConsumerStatus(
                consumer=name,
                category=category,
                position=position,
                head=head,
                lag_messages=lag,
                lag_seconds=0.0 if oldest is None else round((now - oldest).total_seconds(), 3),
                state=_state(
                    held,
                    lease["state"] if lease else None,
                    "#g" in name or refill_to is not None,
                    lag == 0,
                    position > head,
                ),
                leaseholder=lease["owner"] if held and lease else None,
                parked=parked.get(name, 0),
            )
        )
    return report
