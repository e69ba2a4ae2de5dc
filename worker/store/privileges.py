"""The rights the worker's runtime role needs, which of them a role lacks, and granting them.

Two roles (``README.md``, section "Database roles"): the owner runs ``worker db install`` and
owns what it creates (MessageDB, the worker schema, the read-model tables); the runtime role
that ``worker run`` uses gets exactly ``WRITE`` from ``worker db grant ROLE``: membership of
MessageDB's ``message_store`` role, DML on the worker schema's tables, and DML on the relations
of the read-model schemas. No CREATE anywhere. Reading (``worker status``) needs ``READ``.
Application code (``worker.open_store``) needs ``MESSAGES``, and ``STATE`` when it saves
aggregates that are not event-sourced.

``grant`` records the role in ``worker.grants``; ``worker db install`` grants every recorded
role again after it migrated and created tables, and a rebuild grants them its new tables.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.errors import PrivilegeError, UsageError, WorkerError
from worker.store import queries as q
from worker.store.read_schema import ROLES_HELP

if TYPE_CHECKING:
    from collections.abc import Sequence

    from worker.store.types import Connection

Right = tuple[str, str, str]  # (kind, object, right)

_WORKER_TABLES = (
    "positions",
    "leases",
    "dead_letters",
    "projections",
    "aggregate_state",
    "paused",
    "setups",
    "deadlines",
    "groups",
)

# MessageDB's role: its install grants it exactly what a client of the store needs.
MESSAGE_STORE_ROLE = "message_store"

# MessageDB's functions that reading and writing both call.
_MESSAGE_FUNCTIONS: tuple[Right, ...] = (
    ("function", "message_store.category(varchar)", "EXECUTE"),
    ("function", "message_store.hash_64(varchar)", "EXECUTE"),
    ("function", "message_store.cardinal_id(varchar)", "EXECUTE"),
)

# Writing messages, beyond reading them.
_WRITING_MESSAGES: tuple[Right, ...] = (
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
)

READ: tuple[Right, ...] = (
    ("schema", "message_store", "USAGE"),
    ("table", "message_store.messages", "SELECT"),
    ("function", "message_store.message_store_version()", "EXECUTE"),
    *_MESSAGE_FUNCTIONS,
    ("schema", "worker", "USAGE"),
    ("table", "worker.migrations", "SELECT"),
    *(("table", f"worker.{table}", "SELECT") for table in _WORKER_TABLES),
)

# Reading and writing MessageDB: what a MessageStore (and event-sourced aggregates) need; the
# ``message_store`` role that MessageDB's install creates holds them all.
MESSAGES: tuple[Right, ...] = (
    ("schema", "message_store", "USAGE"),
    ("table", "message_store.messages", "SELECT"),
    *_WRITING_MESSAGES,
    *_MESSAGE_FUNCTIONS,
    ("function", "message_store.message_store_version()", "EXECUTE"),
)

# The state rows of aggregates that are not event-sourced, in the worker schema.
STATE: tuple[Right, ...] = (
    ("schema", "worker", "USAGE"),
    ("table", "worker.migrations", "SELECT"),
    *(("table", "worker.aggregate_state", right) for right in ("SELECT", "INSERT", "UPDATE")),
)

# What `worker run` needs, and what `worker db grant` gives (with DML in the read-model schemas).
WRITE: tuple[Right, ...] = (
    *READ,
    *_WRITING_MESSAGES,
    *(
        ("table", f"worker.{table}", right)
        for table in _WORKER_TABLES
        for right in ("INSERT", "UPDATE", "DELETE")
    ),
    ("sequence", "worker.dead_letters_id_seq", "USAGE"),
)

# Rights on each relation of a read-model schema (sequences: those of a setup's serial columns).
TABLE_RIGHTS = "SELECT, INSERT, UPDATE, DELETE"
SEQUENCE_RIGHTS = "USAGE, SELECT"


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


# -- granting --------------------------------------------------------------------------------


def quote_role(name: str) -> str:
    """A role name as an SQL identifier (any name PostgreSQL allows, quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def _worker_schema_grants(grantee: str) -> list[str]:
    """The worker-schema half of ``WRITE`` as GRANT statements (MessageDB's half comes with
    membership of its role)."""
    by_object: dict[tuple[str, str], list[str]] = defaultdict(list)
    for kind, name, right in WRITE:
        if name.startswith("worker."):
            by_object[(kind, name)].append(right)
    statements = [q.grant("USAGE", "SCHEMA worker", grantee)]
    for (kind, name), rights in by_object.items():
        statements.append(q.grant(", ".join(rights), f"{kind.upper()} {name}", grantee))
    return statements


@dataclass
class Granted:
    """What ``grant`` gave a role, and what it found that it could not take back."""

    role: str
    relations: list[str] = field(default_factory=list)  # read-model relations, qualified
    skipped: list[str] = field(default_factory=list)  # relations another role owns
    excess: list[str] = field(default_factory=list)  # rights the role holds beyond WRITE


async def grant(conn: Connection, role: str, read_schemas: Sequence[str]) -> Granted:
    """Give ``role`` what ``worker run`` needs, in one transaction, and record it.

    Read-model relations are granted when the connected role owns them (relations of another
    owner are listed in ``skipped``); ``excess`` names CREATE rights the role already held.
    """
    if not await conn.fetchval(q.ROLE_EXISTS, role):
        raise UsageError(
            f'role "{role}" does not exist: create it first (CREATE ROLE "{role}" LOGIN '
            "PASSWORD '...'), then grant"
        )
    if role == await conn.fetchval(q.CURRENT_USER):
        raise UsageError(
            f'role "{role}" is the one connected (the owner): name the runtime role that '
            "`worker run` uses"
        )
    for schema in read_schemas:
        if await conn.fetchval(q.SCHEMA_EXISTS, schema) is None:
            raise WorkerError(
                f'the read-model schema "{schema}" does not exist yet: run `worker db install` '
                "first"
            )
    grantee = quote_role(role)
    granted = Granted(role)
    async with conn.transaction():
        if not await conn.fetchval(q.IS_MEMBER, role, MESSAGE_STORE_ROLE):
            await conn.execute(q.grant_membership(MESSAGE_STORE_ROLE, grantee))
        for statement in _worker_schema_grants(grantee):
            await conn.execute(statement)
        for schema in read_schemas:
            await conn.execute(q.grant("USAGE", f'SCHEMA "{schema}"', grantee))
            for name, is_sequence, owned in await conn.fetch(q.SCHEMA_RELATIONS, [schema]):
                if not owned:
                    granted.skipped.append(name)
                    continue
                if is_sequence:
                    await conn.execute(q.grant(SEQUENCE_RIGHTS, f"SEQUENCE {name}", grantee))
                else:
                    await conn.execute(q.grant(TABLE_RIGHTS, f"TABLE {name}", grantee))
                granted.relations.append(name)
        await conn.execute(q.RECORD_GRANT, role)
    rows = await conn.fetch(q.EXCESS_RIGHTS, role, list(read_schemas))
    granted.excess = [row[0] for row in rows]
    return granted


async def regrant(conn: Connection, read_schemas: Sequence[str]) -> list[str]:
    """Grant every role ``grant`` recorded (and that still exists) again: after an install
    migrated the worker schema or created read-model tables. Returns their names."""
    me = await current_user(conn)
    roles = [row[0] for row in await conn.fetch(q.RECORDED_GRANTS) if row[0] != me]
    for role in roles:
        await grant(conn, role, read_schemas)
    return roles


async def grant_tables(conn: Connection, tables: Sequence[str]) -> None:
    """Give every recorded role DML on ``tables`` (quoted names this role just created: a
    rebuild's new generation), so a running worker of the runtime role can write them."""
    if not tables or await conn.fetchval(q.GRANTS_TABLE) is None:
        return
    for row in await conn.fetch(q.RECORDED_GRANTS):
        target = "TABLE " + ", ".join(tables)
        await conn.execute(q.grant(TABLE_RIGHTS, target, quote_role(row[0])))


async def current_user(conn: Connection) -> str:
    """The role the connection acts as (for messages)."""
    user: str = await conn.fetchval(q.CURRENT_USER)
    return user
