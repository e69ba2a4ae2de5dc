"""The schema read models live in (``[worker] read_model_schema``, default ``public``).

Every connection the worker opens has ``search_path = "<read_model_schema>", message_store``:
unqualified tables that user code creates land in the read-model schema, and MessageDB's own
functions, which name their table and helpers without a schema, still find them second. The
worker's own SQL always names ``message_store.`` explicitly.

Because MessageDB's functions resolve names through that path, an object in the read-model
schema named like one of MessageDB's would be used in its place (``write_message`` would insert
into a ``messages`` table of the read-model schema). Such names are reserved.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import asyncpg

from worker.errors import PrivilegeError, WorkerError
from worker.store import queries as q

if TYPE_CHECKING:
    from worker.store.types import Connection

ROLES_HELP = 'see "Database roles" in the README'

# MessageDB 1.3's table, type, functions and views (its install files, one name each). A test
# checks that every table, view, type and function in schema message_store is listed here.
MESSAGE_DB_NAMES = frozenset(
    {
        "messages",
        "message",
        "message_store_version",
        "hash_64",
        "acquire_lock",
        "category",
        "is_category",
        "id",
        "cardinal_id",
        "stream_version",
        "write_message",
        "get_stream_messages",
        "get_category_messages",
        "get_last_stream_message",
        "stream_summary",
        "type_summary",
        "stream_type_summary",
        "type_stream_summary",
        "category_type_summary",
        "type_category_summary",
    }
)

# Schemas that are never a place for read models.
_NOT_FOR_READ_MODELS = frozenset({"message_store", "worker", "information_schema"})
_PLAIN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(name: str) -> str:
    """``name`` if it can hold read models (a plain lower-case identifier, none of the
    worker's or MessageDB's schemas); else ``ValueError`` saying why."""
    if not _PLAIN.match(name):
        raise ValueError(
            f"{name!r} is not a plain schema name (lower-case letters, digits and _, "
            "not starting with a digit)"
        )
    if name in _NOT_FOR_READ_MODELS or name.startswith("pg_"):
        raise ValueError(f"schema {name!r} is not a place for read models; name another one")
    return name


def search_path(schema: str) -> str:
    """The search path of every worker connection: the read-model schema, then MessageDB's."""
    return f'"{check_schema_name(schema)}", message_store'


def is_reserved(table: str) -> bool:
    """True when a table of that name in the read-model schema would shadow MessageDB's."""
    return table.lower() in MESSAGE_DB_NAMES


async def ensure(conn: Connection, schema: str) -> bool:
    """Create the read-model schema if it is missing; a clear error when the role may not, or
    may not use it. Returns whether the role may create tables in it (the owner role may; the
    runtime role of ``worker db grant`` may not, and finds its tables made by the install)."""
    row = await conn.fetchrow(q.SCHEMA_PRIVILEGES, schema)
    assert row is not None  # a SELECT without FROM returns one row
    exists, create_in_db, usage, create, user, database = row
    if not exists:
        if not create_in_db:
            raise PrivilegeError(
                f'the read-model schema "{schema}" does not exist, and role "{user}" lacks '
                f'CREATE on database "{database}" to create it: run `worker db install` with '
                f"the owner role, or create the schema ({ROLES_HELP})"
            )
        try:
            await conn.execute(q.create_schema(f'"{check_schema_name(schema)}"'))
        except asyncpg.PostgresError as error:
            raise WorkerError(f'cannot create the read-model schema "{schema}": {error}') from error
        create = True
    else:
        if not usage:
            raise PrivilegeError(
                f'role "{user}" lacks USAGE on schema "{schema}", where read-model tables go '
                f"({ROLES_HELP})"
            )
        await check_unshadowed(conn, schema)
    await check_no_strays(conn, schema)
    return bool(create)


async def check_no_strays(conn: Connection, schema: str) -> None:
    """Refuse to run while MessageDB's schema holds tables that are not MessageDB's: earlier
    versions put the tables a projector's ``setup`` created there, and running on would start
    those read models afresh in the read-model schema, without their rows."""
    strays = [row[0] for row in await conn.fetch(q.STRAY_TABLES, sorted(MESSAGE_DB_NAMES))]
    if strays:
        first = strays[0]
        raise WorkerError(
            f"schema message_store holds tables that are not MessageDB's: {', '.join(strays)} "
            f'(earlier versions put read-model tables there; they now go to "{schema}"): move '
            f'each (ALTER TABLE message_store.{first} SET SCHEMA "{schema}"), or drop it and '
            "reset its projection, then start again"
        )


async def check_unshadowed(conn: Connection, schema: str) -> None:
    """Refuse to run when the read-model schema holds an object named like one of MessageDB's:
    MessageDB's functions would use it in place of their own."""
    names = [row[0] for row in await conn.fetch(q.SCHEMA_SHADOWS, schema, sorted(MESSAGE_DB_NAMES))]
    if names:
        listed = ", ".join(f'"{schema}".{name}' for name in names)
        raise WorkerError(
            f"{listed} shadows MessageDB's object of that name (MessageDB's functions would use "
            "it instead of their own): rename it, or set [worker] read_model_schema to another "
            "schema"
        )
