"""The rights the worker's database role needs today, and which of them a role lacks.

``README.md``, section "Database roles", says the same in prose. Reading (``worker status``)
needs the ``READ`` rights; running consumers, replaying, resetting and rebuilding need
``WRITE`` too, plus CREATE in the read-model schema (checked by ``worker.read_schema``).
Application code (``worker.open_store``) needs ``MESSAGES``, and ``STATE`` when it saves
aggregates that are not event-sourced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.errors import PrivilegeError
from worker.store import queries as q
from worker.store.read_schema import ROLES_HELP

if TYPE_CHECKING:
    from worker.store.types import Connection

Right = tuple[str, str, str]  # (kind, object, right)

_WORKER_TABLES = ("positions", "leases", "dead_letters", "projections", "aggregate_state")

READ: tuple[Right, ...] = (
    ("schema", "message_store", "USAGE"),
    ("table", "message_store.messages", "SELECT"),
    ("function", "message_store.message_store_version()", "EXECUTE"),
    ("function", "message_store.category(varchar)", "EXECUTE"),
    ("function", "message_store.hash_64(varchar)", "EXECUTE"),
    ("function", "message_store.cardinal_id(varchar)", "EXECUTE"),
    ("schema", "worker", "USAGE"),
    ("table", "worker.migrations", "SELECT"),
    *(("table", f"worker.{table}", "SELECT") for table in _WORKER_TABLES),
)

# Reading and writing MessageDB: what a MessageStore (and event-sourced aggregates) need; the
# ``message_store`` role that MessageDB's install creates holds them all.
MESSAGES: tuple[Right, ...] = (
    ("schema", "message_store", "USAGE"),
    ("table", "message_store.messages", "SELECT"),
    ("table", "message_store.messages", "INSERT"),
    ("sequence", "message_store.messages_global_position_seq", "USAGE"),
    (
        "function",
        "message_store.write_message(varchar, varchar, varchar, jsonb, jsonb, bigint)",
        "EXECUTE",
    ),
    ("function", "message_store.stream_version(varchar)", "EXECUTE"),
    ("function", "message_store.acquire_lock(varchar)", "EXECUTE"),
    ("function", "message_store.is_category(varchar)", "EXECUTE"),
    ("function", "message_store.category(varchar)", "EXECUTE"),
    ("function", "message_store.hash_64(varchar)", "EXECUTE"),
    ("function", "message_store.cardinal_id(varchar)", "EXECUTE"),
    ("function", "message_store.message_store_version()", "EXECUTE"),
)

# The state rows of aggregates that are not event-sourced, in the worker schema.
STATE: tuple[Right, ...] = (
    ("schema", "worker", "USAGE"),
    ("table", "worker.migrations", "SELECT"),
    *(("table", "worker.aggregate_state", right) for right in ("SELECT", "INSERT", "UPDATE")),
)

WRITE: tuple[Right, ...] = (
    *READ,
    ("table", "message_store.messages", "INSERT"),
    ("sequence", "message_store.messages_global_position_seq", "USAGE"),
    (
        "function",
        "message_store.write_message(varchar, varchar, varchar, jsonb, jsonb, bigint)",
        "EXECUTE",
    ),
    ("function", "message_store.stream_version(varchar)", "EXECUTE"),
    ("function", "message_store.acquire_lock(varchar)", "EXECUTE"),
    ("function", "message_store.is_category(varchar)", "EXECUTE"),
    *(
        ("table", f"worker.{table}", right)
        for table in _WORKER_TABLES
        for right in ("INSERT", "UPDATE", "DELETE")
    ),
    ("sequence", "worker.dead_letters_id_seq", "USAGE"),
)


async def missing(conn: Connection, rights: tuple[Right, ...]) -> tuple[str, list[str]]:
    """(the role's name, the rights it lacks as ``"USAGE on schema worker"``), in order."""
    kinds, names, privileges = (list(column) for column in zip(*rights, strict=True))
    rows = await conn.fetch(q.MISSING_RIGHTS, kinds, names, privileges)
    user = rows[0][3] if rows else ""
    return user, [f"{row[2]} on {row[0]} {row[1]}" for row in rows]


async def check(conn: Connection, rights: tuple[Right, ...] = WRITE) -> None:
    """Raise one ``PrivilegeError`` naming the first rights the role lacks, if any."""
    user, lacking = await missing(conn, rights)
    if not lacking:
        return
    shown = ", ".join(lacking[:3])
    more = f" and {len(lacking) - 3} more" if len(lacking) > 3 else ""
    raise PrivilegeError(f'role "{user}" lacks {shown}{more} ({ROLES_HELP})')
