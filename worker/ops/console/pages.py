"""What each page of the console shows, gathered with the code ``worker status``,
``worker projections`` and ``worker dlq`` use."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from worker.engine import operations
from worker.engine.dead_letters import PostgresParkedMessages
from worker.engine.names import ConsumerName
from worker.ops.console.chart import sparkline
from worker.ops.status import projection_status
from worker.store.installer import installed_version

if TYPE_CHECKING:
    import asyncpg

    from worker.ops.console.state import Console
    from worker.ops.status import Frame

# Parked messages one page lists at most, and characters of data or metadata shown before
# the rest is folded away.
PARKED_SHOWN = 200
CLIP = 200


async def versions(pool: asyncpg.Pool[Any]) -> dict[str, str]:
    """The PostgreSQL server's version and MessageDB's."""
    async with pool.acquire() as conn:
        server = conn.get_settings().server_version.split(" ")[0]
        message_db = await installed_version(conn)
    return {
        "postgresql": server,
        "message_db": message_db or "not installed",
    }


def _member(name: str) -> str:
    parsed = ConsumerName.parse(name)
    if parsed is None or parsed.member is None:
        return "-"
    return f"{parsed.member} of {parsed.size}"


def overview(console: Console, frame: Frame) -> dict[str, Any]:
    """The overview's consumers (a row each, with its rate chart) and the worker processes
    holding them (from their leases)."""
    rows = []
    processes: dict[str, list[str]] = {}
    for status in frame.consumers:
        rate = frame.rates.get(status.consumer)
        chart = sparkline(list(console.live.rates.get(status.consumer, [])))
        rows.append({**status.as_dict(), "member": _member(status.consumer), "rate": rate})
        rows[-1]["chart"] = chart
        if status.leaseholder is not None:
            processes.setdefault(status.leaseholder, []).append(status.consumer)
    return {"rows": rows, "processes": processes, "at": frame.at.strftime("%H:%M:%S UTC")}


def _shown(value: Any) -> dict[str, Any]:
    """A message's data or metadata as JSON: its start, and whether there is more."""
    text = json.dumps(value, indent=2, default=str)
    return {"text": text, "clip": text[:CLIP], "long": len(text) > CLIP}


async def parked(console: Console) -> dict[str, Any]:
    """Parked messages by consumer (with the stored message's data and metadata), oldest
    first, at most ``PARKED_SHOWN``."""
    rows = await PostgresParkedMessages(console.pool).listing(limit=PARKED_SHOWN + 1)
    by_consumer: dict[str, list[dict[str, Any]]] = {}
    for row in rows[:PARKED_SHOWN]:
        message = await operations.message_of(console.pool, row)
        row["data"] = _shown(message["data"] if message else None)
        row["metadata"] = _shown(message["metadata"] if message else None)
        by_consumer.setdefault(row["consumer"], []).append(row)
    return {"by_consumer": by_consumer, "more": len(rows) > PARKED_SHOWN}


async def projections(console: Console) -> dict[str, Any]:
    """Every projection as ``worker projections`` reports it, its consumers (for reset) and
    the progress of rebuilds: those this console started, and any other's building
    consumers."""
    found = await projection_status(console.pool, console.app.domain)
    frame = console.live.frame
    consumers = [] if frame is None else frame.consumers
    names = {c.consumer: ConsumerName.parse(c.consumer) for c in consumers}
    rows = []
    for projection in found:
        mine = [
            (c, names[c.consumer])
            for c in consumers
            if (name := names[c.consumer]) is not None and name.subscriber == projection.name
        ]
        rows.append(
            {
                **projection.as_dict(),
                "live_consumers": [c for c, name in mine if name and not name.is_building],
                "building_consumers": [c for c, name in mine if name and name.is_building],
                "progress": console.rebuilds.by_projection.get(projection.name),
            }
        )
    return {"projections": rows}
