"""The index a consumer group reads through: one per group size, on MessageDB's table.

A member of a group of ``size`` reads the streams whose ``hash_64(cardinal_id)`` modulo ``size``
is its number. MessageDB evaluates that hash on every row of the category, so each member would
scan the whole category; the index ``worker_group_<size>`` keys the rows by (category, member,
global position), so a member reads only its own rows, in order. The modulo is part of the key,
so there is one index per group size in use. ``worker db install`` creates them for the
configured subscribers; a read without its index returns the same rows, scanning the category.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.errors import PrivilegeError
from worker.store import queries as q

if TYPE_CHECKING:
    from worker.store.types import Connection


async def group_index_ready(conn: Connection, size: int) -> bool:
    """Whether the index for groups of ``size`` exists and is valid."""
    valid: bool | None = await conn.fetchval(q.GROUP_INDEX_STATE, q.group_index_name(size))
    return bool(valid)


async def create_group_index(conn: Connection, size: int) -> bool:
    """Build the index for groups of ``size`` unless it is there; True when it was built.

    Built concurrently (writers go on writing), so ``conn`` must not be in a transaction; an
    index left invalid by an interrupted build is dropped and built again. The table is analyzed
    afterwards: without statistics of the new expression the planner takes a member for a few
    rows and sorts its whole share instead of walking the index. Needs ownership of
    ``message_store.messages`` (the role that installed MessageDB).
    """
    state = await conn.fetchval(q.GROUP_INDEX_STATE, q.group_index_name(size))
    if state:
        return False
    if not await conn.fetchval(q.OWNS_MESSAGES):
        _refuse(size)
    if state is False:
        await conn.execute(q.drop_group_index(size))
    await conn.execute(q.create_group_index(size))
    await conn.execute(q.ANALYZE_MESSAGES)
    return True


async def check_group_index_rights(conn: Connection, sizes: list[int]) -> None:
    """Before an install changes anything: one ``PrivilegeError`` when indexes of ``sizes`` are
    missing and the role could not build them (MessageDB's table is another role's)."""
    missing = [size for size in sizes if not await group_index_ready(conn, size)]
    if missing and await conn.fetchval(q.OWNS_MESSAGES) is False:
        _refuse(missing[0])


def _refuse(size: int) -> None:
    raise PrivilegeError(
        f"cannot create index {q.group_index_name(size)} for consumer groups of {size}: "
        "the role does not own message_store.messages (run it as MessageDB's owner)"
    )
