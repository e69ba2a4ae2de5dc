"""The console's ASGI application: its pages, their live updates (Server-Sent Events), the
sign-in and the actions."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio
import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from worker.errors import PrivilegeError, WorkerError
from worker.ops.console import actions, messages, pages
from worker.ops.console.live import Live
from worker.ops.console.security import Guard, Sessions, csrf_problem, origin_problem, token_matches
from worker.ops.console.state import Console, Options
from worker.store import privileges
from worker.store.read_schema import ROLES_HELP

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from starlette.requests import Request

    from worker.ops.app import App
    from worker.ops.console.security import Session

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")

TEMPLATE = {
    "overview": "overview.html",
    "parked": "parked.html",
    "projections": "projections.html",
    "messages": "messages.html",
}


def create_app(app: App, options: Options) -> Starlette:
    """The console of ``app``: read-only unless ``options.allow_actions``."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        pool = await app.pool(max_size=4, rights=privileges.READ)
        try:
            live = Live(options.refresh)
            async with anyio.create_task_group() as tg:
                found = await pages.versions(pool)
                console = Console(app, options, pool, live, tg, found)
                tg.start_soon(live.run, pool, app.domain)
                yield {"console": console}
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await pool.close()

    routes = [
        Route("/", overview),
        Route("/parked", parked),
        Route("/projections", projections),
        Route("/messages", messages_page),
        Route("/events/{page}", events),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/actions/{name}", act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(Guard, sessions=Sessions(), hosts=options.hosts)]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def _console(request: Request) -> Console:
    console: Console = request.state.console
    return console


def _session(request: Request) -> Session:
    session: Session = request.state.session
    return session


async def _content(console: Console, page: str, request: Request) -> dict[str, Any]:
    if page == "messages":
        return await messages.messages(console, request.query_params)
    if page == "overview":
        return pages.overview(console, await console.live.fresh())
    if page == "parked":
        return await pages.parked(console)
    return await pages.projections(console)


async def render(
    request: Request,
    page: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    confirm: dict[str, Any] | None = None,
) -> Response:
    """``page`` with what it shows, the session's state and a line saying how an action went."""
    console = _console(request)
    session = _session(request)
    context = {
        "page": page,
        "console": console,
        "versions": console.versions,
        "actions": console.options.allow_actions,
        "signed_in": session.signed_in,
        "csrf": session.csrf,
        "notice": notice,
        "error": error,
        "confirm": confirm,
        **await _content(console, page, request),
    }
    return templates.TemplateResponse(request, TEMPLATE[page], context, status_code=status)


async def overview(request: Request) -> Response:
    return await render(request, "overview")


async def parked(request: Request) -> Response:
    return await render(request, "parked")


async def projections(request: Request) -> Response:
    return await render(request, "projections")


async def messages_page(request: Request) -> Response:
    return await render(request, "messages")


# -- live updates ---------------------------------------------------------------------------

FRAGMENT = {"overview": "_consumers.html", "projections": "_projections.html"}


async def events(request: Request) -> Response:
    """A page's live part, re-rendered with every new look at the consumers, as Server-Sent
    Events (one ``data:`` line per line of HTML)."""
    page = request.path_params["page"]
    if page not in FRAGMENT:
        return PlainTextResponse(f"no live updates for {page!r}", status_code=404)
    console = _console(request)
    session = _session(request)

    async def stream() -> AsyncIterator[str]:
        seen = 0
        async with console.live.watching():
            while True:
                frame = await console.live.newer(seen)
                seen = console.live.number
                context = {
                    "console": console,
                    "actions": console.options.allow_actions,
                    "csrf": session.csrf,
                    **await _content(console, page, request),
                }
                html = templates.get_template(FRAGMENT[page]).render(context)
                data = "".join(f"data: {line}\n" for line in html.splitlines())
                yield f"event: update\nid: {frame.at.isoformat()}\n{data}\n"

    return StreamingResponse(stream(), media_type="text/event-stream")


# -- sign-in and actions --------------------------------------------------------------------


# Bytes a form may have: the console's forms are a few short fields.
FORM_LIMIT = 16 * 1024


async def _form(request: Request) -> dict[str, str]:
    """The POST's fields (URL-encoded, as the console's forms send them; the last of a name
    wins); nothing when the body is longer than ``FORM_LIMIT``, so a CSRF check fails."""
    body = await request.body()
    if len(body) > FORM_LIMIT:
        return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _who(request: Request, console: Console) -> dict[str, str]:
    client = request.client
    remote = f"{client.host}:{client.port}" if client else "unknown"
    return {"operator": console.options.operator, "remote": remote}


def _refusal(request: Request, form: Mapping[str, str]) -> str | None:
    return origin_problem(request) or csrf_problem(_session(request), form.get("csrf"))


async def signin(request: Request) -> Response:
    """Sign this session in with the console's token (the token itself is never kept)."""
    console = _console(request)
    form = await _form(request)
    problem = _refusal(request, form)
    if problem is None and not token_matches(form.get("token", ""), console.options.token):
        problem = "refused: that is not the console's token"
    who = _who(request, console)
    if problem is not None:
        actions.log.warning("console sign-in refused", reason=problem, **who)
        return await render(request, "overview", error=problem, status=403)
    _session(request).signed_in = True
    actions.log.info("console sign-in", **who)
    return await render(request, "overview", notice="signed in: actions are enabled")


async def signout(request: Request) -> Response:
    form = await _form(request)
    problem = _refusal(request, form)
    if problem is not None:
        return await render(request, "overview", error=problem, status=403)
    _session(request).signed_in = False
    return await render(request, "overview", notice="signed out")


def _action_refusal(request: Request, name: str, form: Mapping[str, str]) -> str | None:
    console = _console(request)
    if name not in actions.ACTIONS:
        return f"refused: no action named {name!r}"
    if not console.options.allow_actions:
        return "refused: this console is read-only (started without --allow-actions)"
    if not _session(request).signed_in:
        return "refused: sign in with the console's token first"
    return _refusal(request, form)


async def act(request: Request) -> Response:
    """Run an action (after its confirmation, for those that ask one) and show the page with
    what came of it; a refused or failed action is one line saying why."""
    name = request.path_params["name"]
    console = _console(request)
    form = await _form(request)
    who = _who(request, console)
    page = actions.ACTIONS[name].page if name in actions.ACTIONS else "overview"
    problem = _action_refusal(request, name, form)
    if problem is not None:
        actions.audit(name, form, who, problem)
        return await render(request, page, error=problem, status=403)
    action = actions.ACTIONS[name]
    if action.confirm is not None and form.get("confirm") != "yes":
        question = {"name": name, "question": action.confirm(form), "form": form}
        return await render(request, page, confirm=question)
    try:
        done = await actions.perform(console, name, form)
    except PrivilegeError as error:
        actions.audit(name, form, who, f"refused: {error}")
        return await render(request, page, error=f"{name}: refused: {error}", status=403)
    except WorkerError as error:
        actions.audit(name, form, who, f"failed: {error}")
        return await render(request, page, error=f"{name}: {error}", status=400)
    except asyncpg.InsufficientPrivilegeError as error:
        line = f"{name}: the database role lacks a right: {error} ({ROLES_HELP})"
        actions.audit(name, form, who, line)
        return await render(request, page, error=line, status=403)
    actions.audit(name, form, who, done)
    return await render(request, page, notice=done)
