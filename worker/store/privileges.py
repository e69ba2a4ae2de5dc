"""The rights the worker's database role needs today, and which of them a role lacks.

``README.md``, section "Database roles", says the same in prose. Reading (``worker status``)
needs the ``READ`` rights; running consumers, replaying, resetting and rebuilding need
``WRITE`` too, plus CREATE in the read-model schema (checked by ``worker.read_schema``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, LiteralString

from worker.errors import PrivilegeError
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

# Objects that do not exist are left out (whether MessageDB and the worker schema are installed,
# and current, is checked apart), and so are those of a schema the role may not use: naming an
# object in it is an error, and the schema's USAGE is reported instead. A CASE keeps that order.
_MISSING: LiteralString = """
SELECT kind, name, privilege, current_user
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(kind, name, privilege, n)
WHERE CASE
    WHEN kind = 'schema' THEN
        CASE WHEN to_regnamespace(name) IS NULL THEN false
             ELSE NOT has_schema_privilege(name, privilege) END
    WHEN to_regnamespace(split_part(name, '.', 1)) IS NULL THEN false
    WHEN NOT has_schema_privilege(split_part(name, '.', 1), 'USAGE') THEN false
    WHEN kind = 'function' THEN
        CASE WHEN to_regprocedure(name) IS NULL THEN false
             ELSE NOT has_function_privilege(name, privilege) END
    WHEN to_regclass(name) IS NULL THEN false
    WHEN kind = 'sequence' THEN NOT has_sequence_privilege(name, privilege)
    ELSE NOT has_table_privilege(name, privilege)
END
ORDER BY n
"""


async def missing(conn: Connection, rights: tuple[Right, ...]) -> tuple[str, list[str]]:
    """(the role's name, the rights it lacks as ``"USAGE on schema worker"``), in order."""
    kinds, names, privileges = (list(column) for column in zip(*rights, strict=True))
    rows = await conn.fetch(_MISSING, kinds, names, privileges)
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
