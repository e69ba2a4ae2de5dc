"""Read-model tables and subscribers' own ``setup(conn)``: made by ``worker db install`` (the
owner role), found in place by ``worker run`` (the runtime role).

A role that may create tables in the read-model schema creates what is missing and runs every
subscriber's ``setup`` (each must be idempotent), as ``worker db install`` does; a role that may
not (the runtime role of ``worker db grant``) finds the tables already there and runs no DDL: a
missing read-model table, or a ``setup`` that never ran in this database (``worker.setups``),
is one clear error telling to run ``worker db install`` with the owner role.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from worker.engine import queries as q
from worker.errors import PrivilegeError
from worker.read import generations
from worker.store import privileges, read_schema

if TYPE_CHECKING:
    from collections.abc import Sequence

    from worker.engine.subscriber import Subscriber
    from worker.read.generations import RebuildDue
    from worker.store.types import Connection

log = structlog.get_logger("worker.setup")


@dataclass
class Prepared:
    """What ``prepare`` found: projections due for a rebuild, and whether the role may create
    tables in the read-model schema (it ran the setups) or not (it found them in place)."""

    may_create: bool
    due: dict[str, RebuildDue] = field(default_factory=dict)


def read_schemas(schema: str, subscribers: Sequence[Subscriber]) -> list[str]:
    """Every schema read models live in: the read-model schema, and those models name."""
    named = {m.__schema__ for s in subscribers for m in s.read_models if m.__schema__}
    return [schema, *sorted(named - {schema})]


async def prepare(
    conn: Connection, subscribers: Sequence[tuple[Subscriber, Any]], schema: str
) -> Prepared:
    """Make or find each subscriber's read-model tables and run (or find run) its ``setup``.

    ``subscribers`` pairs each subscriber with the instance whose ``setup`` to call. A
    transaction-scoped lock per subscriber keeps concurrent processes from running the same DDL
    at once.
    """
    prepared = Prepared(await read_schema.ensure(conn, schema))
    for subscriber, instance in subscribers:
        async with conn.transaction():
            await conn.execute(q.SETUP_LOCK, subscriber.name)
            reason = await generations.prepare(
                conn, subscriber.projection, may_create=prepared.may_create
            )
            await _setup(conn, subscriber, instance, prepared.may_create, schema)
        if reason is not None:
            prepared.due[subscriber.name] = reason
    await read_schema.check_unshadowed(conn, schema)
    return prepared


async def _setup(
    conn: Connection, subscriber: Subscriber, instance: Any, may_create: bool, schema: str
) -> None:
    setup = getattr(instance, "setup", None)
    if setup is None:
        return
    if may_create:
        await setup(conn)
        await conn.execute(q.RECORD_SETUP, subscriber.name)
    elif not await conn.fetchval(q.SETUP_DONE, subscriber.name):
        user = await privileges.current_user(conn)
        raise PrivilegeError(
            f"{subscriber.kind} {subscriber.name!r} has a setup(conn) that has not run in this "
            f'database, and role "{user}" may not create tables in schema "{schema}": run '
            f"`worker db install` with the owner role ({read_schema.ROLES_HELP})"
        )
    else:
        log.debug("setup left to the install", subscriber=subscriber.name)
