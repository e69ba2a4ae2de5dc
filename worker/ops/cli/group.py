"""``worker group resize``: hand a consumer group's streams over to another size, online.

The members of the size before are fenced and their final positions recorded in one
transaction; the members of the new size start from there, each leaving out what the former
owner of a stream had handled (``worker.engine.handover``). Processes of another size stand by.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.engine import handover
from worker.errors import UsageError
from worker.ops.cli import common
from worker.store.group_index import group_index_ready
from worker.store.queries import group_index_name

if TYPE_CHECKING:
    import asyncpg

    from worker.ops.app import App

app = typer.Typer(help="Consumer groups.", no_args_is_help=True)


def _bases(app: App, name: str) -> list[str]:
    """A subscriber's groups (one per category), or the one ``{name}:{category}`` names."""
    subscriber, _, category = name.partition(":")
    found = [s for s in app.domain.subscribers if s.name == subscriber]
    if not found:
        known = ", ".join(sorted(s.name for s in app.domain.subscribers))
        raise UsageError(f"no subscriber named {subscriber!r} (subscribers: {known})")
    categories = found[0].categories
    if category and category not in categories:
        raise UsageError(
            f"{subscriber} does not subscribe to {category!r} ({', '.join(categories)})"
        )
    return [f"{subscriber}:{c}" for c in ([category] if category else categories)]


@app.command("resize")
def resize(
    name: Annotated[
        str, typer.Argument(help="A subscriber, or one of its consumers (name:category).")
    ],
    size: Annotated[int, typer.Argument(help="The new group size (1: a single consumer).", min=1)],
) -> None:
    """Hand a consumer group over to SIZE members now, without a gap or a double.

    Run the worker with the new group_size (its processes stand by until now), then this; the
    processes of the size before stand by from now on and can be stopped.
    """

    async def work(app: App, pool: asyncpg.Pool[Any]) -> list[tuple[str, Any, bool]]:
        bases = _bases(app, name)
        async with pool.acquire() as conn:
            records = await handover.resize(conn, bases, size)
            indexed = size == 1 or await group_index_ready(conn, size)
        return [(base, record, indexed) for base, record in zip(bases, records, strict=True)]

    for base, record, indexed in common.with_pool(work):
        if record is None:
            typer.echo(f"{base}: at size {size} already")
        else:
            typer.echo(
                f"{base}: handed over from {record.from_size} to {size} members, starting at "
                f"{min(record.handed)} (former members' positions {list(record.handed)})"
            )
        if not indexed:
            typer.echo(
                f"{base}: no index {group_index_name(size)} yet: members read by scanning the "
                "category until `worker db install` builds it (with the new group_size)"
            )
