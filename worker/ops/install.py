"""What ``worker db install`` and ``worker db grant`` do for a configured application.

``install`` (the owner role): MessageDB and the worker schema (``worker.store.installer``), then
the read-model tables and views of the configured projections and every subscriber's own
``setup(conn)`` (``worker.engine.setup``), then the grants of the runtime roles recorded by
``grant`` again, so a migration's new tables and the new read-model tables are theirs too.
``grant``: exactly what ``worker run`` needs, to one role (``worker.store.privileges``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.engine import setup
from worker.errors import DatabaseMissingError
from worker.ops.loader import load_domain
from worker.store import privileges
from worker.store.database import Database, connect
from worker.store.group_index import check_group_index_rights, create_group_index
from worker.store.installer import InstallReport, check_installed, install, install_lock
from worker.store.queries import group_index_name

if TYPE_CHECKING:
    from worker.domain import Domain
    from worker.engine.subscriber import Subscriber
    from worker.ops.settings import Settings
    from worker.store.privileges import Granted
    from worker.store.types import Connection


def configured_domain(settings: Settings) -> Domain | None:
    """The application's domain when ``[domain]`` names one (modules or instance), else
    ``None``: ``worker db install`` then installs the store alone."""
    if not settings.domain.modules and not settings.domain.instance:
        return None
    return load_domain(settings)


@dataclass
class Installed:
    """What ``install_application`` did."""

    store: InstallReport
    read_models: dict[str, list[str]] = field(default_factory=dict)  # projection -> tables
    setups: list[str] = field(default_factory=list)  # subscribers whose setup(conn) ran
    due: dict[str, str] = field(default_factory=dict)  # projection -> why a rebuild is due
    regranted: list[str] = field(default_factory=list)  # runtime roles granted again
    group_indexes: list[str] = field(default_factory=list)  # consumer groups' indexes built


async def install_application(
    settings: Settings, domain: Domain | None, dsn: str | Database
) -> Installed:
    """Install the store, then the application's read models and setups; grant again."""
    dsn = settings.database(dsn)
    schema = settings.worker.read_model_schema
    subscribers: tuple[Subscriber, ...] = domain.subscribers if domain is not None else ()
    await _check_group_indexes(dsn, subscribers)
    report = await install(
        dsn,
        settings.message_db,
        notify_trigger=settings.event_store.notify_trigger,
        read_model_schema=schema if domain is not None else None,
    )
    done = Installed(report)
    conn = await connect(dsn)
    try:
        async with install_lock(conn):  # one install's read models and grants at a time
            if domain is not None:
                await _prepare(conn, done, subscribers, schema)
                done.group_indexes = await _index_groups(conn, subscribers)
            done.regranted = await privileges.regrant(conn, setup.read_schemas(schema, subscribers))
    finally:
        await conn.close()
    return done


def _group_sizes(subscribers: tuple[Subscriber, ...]) -> list[int]:
    return sorted({s.options.group_size for s in subscribers if s.options.group_size > 1})


async def _check_group_indexes(dsn: Database, subscribers: tuple[Subscriber, ...]) -> None:
    """Refuse before any change when the role could not build a missing member index."""
    sizes = _group_sizes(subscribers)
    if not sizes:
        return
    try:
        conn = await connect(dsn)
    except DatabaseMissingError:
        return  # created by this install, with MessageDB's table its own
    try:
        await check_group_index_rights(conn, sizes)
    finally:
        await conn.close()


async def _index_groups(conn: Connection, subscribers: tuple[Subscriber, ...]) -> list[str]:
    """Build the index of every consumer group size the subscribers use; the names built."""
    sizes = _group_sizes(subscribers)
    return [group_index_name(size) for size in sizes if await create_group_index(conn, size)]


async def _prepare(
    conn: Connection, done: Installed, subscribers: tuple[Subscriber, ...], schema: str
) -> None:
    """Create the subscribers' read models and run their setups; note it in ``done``."""
    prepared = await setup.prepare(conn, [(s, s.cls()) for s in subscribers], schema)
    done.due = {name: reason.reason for name, reason in prepared.due.items()}
    done.read_models = {
        s.name: [m.__table__ for m in s.read_models] for s in subscribers if s.read_models
    }
    done.setups = [s.name for s in subscribers if hasattr(s.cls, "setup")]


async def grant_role(
    settings: Settings, domain: Domain | None, dsn: str | Database, role: str
) -> Granted:
    """Give ``role`` what ``worker run`` needs in the installed database (as the owner)."""
    dsn = settings.database(dsn)
    subscribers: tuple[Subscriber, ...] = domain.subscribers if domain is not None else ()
    conn = await connect(dsn)
    try:
        await check_installed(conn)
        schemas = setup.read_schemas(settings.worker.read_model_schema, subscribers)
        return await privileges.grant(conn, role, schemas)
    finally:
        await conn.close()
