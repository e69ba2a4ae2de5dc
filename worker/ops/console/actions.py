"""The console's actions: each is the engine operation the CLI runs (``worker pause``,
``resume``, ``dlq replay``, ``dlq discard``, ``reset``, ``rebuild``), checked for the
database role's rights first, and logged naming who asked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from worker.engine import operations
from worker.errors import UsageError
from worker.ops.cli.common import whole_number
from worker.store import privileges

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from worker.ops.console.state import Console

log = structlog.get_logger("worker.console")


@dataclass(frozen=True)
class Action:
    """An action: what it does (``run``), the page showing its result, and whether it asks
    for a confirmation first (and how the confirmation says what it will do)."""

    run: Callable[[Console, Mapping[str, str]], Awaitable[str]]
    page: str
    confirm: Callable[[Mapping[str, str]], str] | None = None


def _field(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise UsageError(f"the form has no {name}")
    return value


def _optional(form: Mapping[str, str], name: str) -> str | None:
    return form.get(name, "").strip() or None


def _id(form: Mapping[str, str]) -> int | None:
    text = _optional(form, "id")
    return None if text is None else whole_number("a parked message's id")(text)


async def _check_writes(console: Console) -> None:
    async with console.pool.acquire() as conn:
        await privileges.check(conn, privileges.WRITE)


async def pause(console: Console, form: Mapping[str, str]) -> str:
    names, reason = [_field(form, "name")], _optional(form, "reason")
    done = await operations.pause(console.pool, console.app.domain, names, reason)
    return "; ".join(
        f"{n}: paused" if n in done.changed else f"{n}: was paused already" for n in done.named
    )


async def resume(console: Console, form: Mapping[str, str]) -> str:
    done = await operations.resume(console.pool, console.app.domain, [_field(form, "name")])
    return "; ".join(
        f"{n}: resumed" if n in done.changed else f"{n}: was not paused" for n in done.named
    )


async def replay(console: Console, form: Mapping[str, str]) -> str:
    app = console.app
    consumer, stream = await operations.parked_target(
        console.pool, _id(form), _optional(form, "consumer"), _optional(form, "stream")
    )
    done = await operations.replay(
        console.pool, app.database, app.settings.worker, app.domain, consumer, stream
    )
    if done.left is None:
        return f"replayed {done.count} message(s) of {done.stream} in the running worker"
    return f"replayed {done.count} message(s) of {done.stream}; {done.left} still parked"


async def discard(console: Console, form: Mapping[str, str]) -> str:
    dead_letter_id = _id(form)
    if dead_letter_id is None:
        consumer, stream = _field(form, "consumer"), _field(form, "stream")
        count = await operations.discard_stream(console.pool, console.app.domain, consumer, stream)
        return f"discarded {count} parked message(s) of {stream}"
    row, left = await operations.discard_one(console.pool, dead_letter_id)
    behind = f"; {left} later message(s) of it stay parked until replayed or discarded"
    return f"discarded parked message {dead_letter_id} of {row['stream_name']}" + (
        behind if left else ""
    )


def _discarding(form: Mapping[str, str]) -> str:
    if form.get("id"):
        return f"Discard parked message {form['id']} without handling it?"
    return f"Discard every parked message of {form.get('stream')} for {form.get('consumer')}?"


async def reset(console: Console, form: Mapping[str, str]) -> str:
    consumer = _field(form, "consumer")
    to = whole_number("the position")(_field(form, "to"))
    app = console.app
    before = await operations.reset(
        console.pool,
        app.database,
        app.domain,
        consumer,
        to,
        wait=form.get("wait") == "yes",
        force=form.get("force") == "yes",
    )
    return f"{consumer}: position {before} -> {to}"


def _resetting(form: Mapping[str, str]) -> str:
    return (
        f"Set the position of {form.get('consumer')} to {form.get('to')}? It resumes with the "
        "message after it."
    )


async def rebuild(console: Console, form: Mapping[str, str]) -> str:
    [subscriber] = operations.projections_to_rebuild(console.app.domain, _field(form, "name"))
    await operations.check_rebuild_rights(console.pool, [subscriber], in_place=False)
    console.rebuilds.start(console.tasks, console.app, subscriber)
    return f"{subscriber.name}: rebuild started (blue/green); its progress shows below"


def _rebuilding(form: Mapping[str, str]) -> str:
    return (
        f"Rebuild {form.get('name')} from position 0 into new tables? Readers keep the "
        "current tables until the new ones have caught up."
    )


ACTIONS: dict[str, Action] = {
    "pause": Action(pause, "overview"),
    "resume": Action(resume, "overview"),
    "replay": Action(replay, "parked"),
    "discard": Action(discard, "parked", _discarding),
    "reset": Action(reset, "projections", _resetting),
    "rebuild": Action(rebuild, "projections", _rebuilding),
}

# Those that check their rights themselves (a rebuild needs the owner's, not DML).
_OWN_CHECK = {"rebuild"}


async def perform(console: Console, name: str, form: Mapping[str, str]) -> str:
    """Run action ``name`` with ``form`` after checking the role may write."""
    if name not in _OWN_CHECK:
        await _check_writes(console)
    return await ACTIONS[name].run(console, form)


def audit(name: str, form: Mapping[str, str], who: Mapping[str, Any], outcome: str) -> None:
    """The log line of an action: what, on what, who asked and from where, and what came of
    it (the form's CSRF token left out)."""
    target = {k: v for k, v in form.items() if k not in ("csrf", "confirm") and v}
    log.info("console action", action=name, target=target, outcome=outcome, **who)
