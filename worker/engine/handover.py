"""A consumer group's size of record, and handing its streams over when the size changes.

A stream belongs to member ``hash_64(cardinal_id) mod size``, so a new size gives most streams
a new owner, and the members keep positions of their own: started side by side, the members of
two sizes would handle some messages twice and, started from the new members' own positions,
skip others. So only the members of the size of record (``worker.groups``; the plain consumer
for size 1) may take their leases, and a change of size is one transaction (``hand_over``):

1. fence every member of the size before (their epochs move on: a batch in flight commits
   before the fence or never, and no renewal succeeds after it);
2. read their final positions (``handed``) and record the new size with them;
3. start every new member at the least of them.

A new member then reads its share from there without the messages whose stream's former owner
had handled them (global position at or below that owner's final position, ``handed``), so
every message is handled once: by its former owner up to the hand-over, by its new one after.

``worker group resize NAME N`` hands over at once (and pins the size: processes of another size
stand by). A process started with another ``group_size`` than the group's finds the members of
the size of record held and stands by; once none of them is held (the last replica of the old
size stopped) it hands the group over itself. A group with parked messages is not handed over:
they belong to the members that parked them (replay or discard them first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from worker.engine import queries as q
from worker.engine.names import ConsumerName
from worker.errors import WorkerError

if TYPE_CHECKING:
    from worker.store.types import Connection

log = structlog.get_logger("worker.group")


class HandOverError(WorkerError):
    """A consumer group cannot be handed over to another size now (the message says why)."""


@dataclass(frozen=True, slots=True)
class Record:
    """A group's size of record; after a resize, the size before and its final positions."""

    size: int
    from_size: int | None = None
    handed: tuple[int, ...] = ()
    pinned: bool = False

    @property
    def upto(self) -> int:
        """The furthest final position handed over: beyond it nothing is left out."""
        return max(self.handed, default=0)


def members(base: str, size: int) -> list[str]:
    """The consumer names of the members of a group of ``size`` (the plain name for 1)."""
    name = ConsumerName.parse(base)
    assert name is not None and name.member is None and not name.is_building, base
    if size == 1:
        return [base]
    return [str(ConsumerName(name.subscriber, name.category, m, size)) for m in range(size)]


def group_of(consumer: str) -> tuple[str, int] | None:
    """(the group's base name, the size) a consumer runs at; None for a rebuild's consumer."""
    name = ConsumerName.parse(consumer)
    if name is None or name.is_building:
        return None
    return name.base, name.size or 1


async def record(conn: Connection, base: str) -> Record | None:
    """The group's record, if it has one."""
    row = await conn.fetchrow(q.GROUP_RECORD, base)
    if row is None:
        return None
    return Record(row["size"], row["from_size"], tuple(row["handed"] or ()), row["pinned"])


async def admit(conn: Connection, consumer: str) -> str | None:
    """Inside the transaction that takes ``consumer``'s lease: None when it may take it (its
    size is the group's, recorded now if the group never ran), else why it stands by."""
    group = group_of(consumer)
    if group is None:
        return None
    base, size = group
    await conn.execute(q.GROUP_LOCK_SHARED, base)
    found = await record(conn, base)
    if found is None:
        former = [row[0] for row in await conn.fetch(q.FORMER_SIZES, base, f"{base}@")]
        if former and former[0] != size:
            return f"group {base} ran at size {former[0]}: to be handed over to {size}"
        await conn.execute(q.FIRST_GROUP_SIZE, base, size)
        found = await record(conn, base)
        assert found is not None
    if found.size == size:
        return None
    return f"group {base} runs at size {found.size}, this process at {size}"


async def hand_over(
    conn: Connection, base: str, size: int, *, force: bool, by: str = ""
) -> Record | None:
    """Make ``size`` the group's size, handing the streams over (see the module doc); the new
    record, or None when nothing changed. Without ``force`` (a process of the new size) only
    once no member of the size before is held, and never from a pinned size; ``force`` (the
    command) fences held members and pins the size."""
    async with conn.transaction():
        await conn.execute(q.GROUP_LOCK, base)
        found = await record(conn, base)
        before = found.size if found is not None else await _former_size(conn, base)
        if before is None or before == size:
            await conn.execute(q.FIRST_GROUP_SIZE, base, size)
            return None
        old = members(base, before)
        if not force and ((found is not None and found.pinned) or await _live(conn, old)):
            return None
        await _check_parked(conn, base, old)
        for member in old:
            await conn.execute(q.FENCE_LEASE, member)
        handed = [int(p) for p in await _column(conn, q.MEMBER_POSITIONS, old)]
        for member in members(base, size):
            await conn.execute(q.START_MEMBER, member, min(handed))
        await conn.execute(q.RECORD_HAND_OVER, base, size, before, handed, force)
        for member in old:
            await conn.execute(q.NOTIFY_CONTROL, member)
    log.warning(
        "consumer group handed over",
        group=base,
        size=size,
        from_size=before,
        handed=handed,
        start=min(handed),
        by=by or ("command" if force else "process"),
    )
    return Record(size, before, tuple(handed), force)


async def _former_size(conn: Connection, base: str) -> int | None:
    rows = await conn.fetch(q.FORMER_SIZES, base, f"{base}@")
    return int(rows[0][0]) if rows else None


async def _live(conn: Connection, names: list[str]) -> bool:
    return bool(await conn.fetch(q.LIVE_MEMBERS, names))


async def _column(conn: Connection, query: str, names: list[str]) -> list[Any]:
    return [row[0] for row in await conn.fetch(query, names)]


async def _check_parked(conn: Connection, base: str, old: list[str]) -> None:
    parked: int = await conn.fetchval(q.PARKED_OF_MEMBERS, old)
    if parked:
        raise HandOverError(
            f"group {base} has {parked} parked message(s) under its members of the size before: "
            "replay or discard them (worker dlq) before a resize"
        )


async def resize(conn: Connection, bases: list[str], size: int) -> list[Record | None]:
    """``worker group resize``: hand each group (``{name}:{category}``) over to ``size`` now,
    fencing its members of the size before; pinned. One group at a time, each in one
    transaction; None for a group already at ``size``."""
    if type(size) is not int or size < 1:
        raise HandOverError(f"a consumer group size is a positive number, got {size!r}")
    return [await hand_over(conn, base, size, force=True) for base in bases]
