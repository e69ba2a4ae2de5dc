"""The console's guards: where it may listen, the token, sessions with their CSRF token,
the checks every POST passes, and the headers every response carries.

Actions are off unless the console was started with ``--allow-actions``; then they need a
session signed in with ``[console] token`` (compared in constant time, never logged or shown),
a form carrying the session's CSRF token, and a request the browser says comes from the
console's own pages (``Origin``, ``Sec-Fetch-Site``).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from worker.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from starlette.requests import Request

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "worker_console"
# Sessions kept at once; the oldest is forgotten past it (its browser gets a new one).
MOST_SESSIONS = 1000

HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # Not "no-referrer": with it, Chromium sends `Origin: null` on the console's own forms.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_start(host: str, token: str | None, allow_actions: bool) -> None:
    """Refuse to start (``UsageError``, exit 2) where the console would be open to others or
    its actions to anyone: a non-loopback address without a token, actions without one."""
    if token is None and not is_loopback(host):
        raise UsageError(
            f"the console would listen on {host}, reachable from other machines, with no "
            "token: set WORKER_CONSOLE__TOKEN, or listen on 127.0.0.1"
        )
    if token is None and allow_actions:
        raise UsageError("--allow-actions needs a token: set WORKER_CONSOLE__TOKEN")


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(host: str) -> tuple[str, ...]:
    """The Host names the console answers to when listening on ``host``: loopback names on
    a loopback address; any (empty) on another, where a token guards it."""
    return (*LOOPBACK_NAMES, host.strip("[]")) if is_loopback(host) else ()


def _host_name(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            try:
                return urlsplit("//" + value.decode("latin-1")).hostname or ""
            except ValueError:  # a malformed port or address
                return ""
    return ""


def token_matches(given: str, token: str | None) -> bool:
    """Whether ``given`` is the console's token (constant time; never with no token set)."""
    return token is not None and hmac.compare_digest(given.encode(), token.encode())


@dataclass
class Session:
    """One browser's session: its CSRF token, and whether it signed in with the token."""

    csrf: str
    signed_in: bool = False


class Sessions:
    """The sessions of this console process, kept in memory (a restart signs everyone out),
    at most ``MOST_SESSIONS`` of them."""

    def __init__(self) -> None:
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def find(self, session_id: str | None) -> Session | None:
        return None if session_id is None else self._by_id.get(session_id)

    def start(self) -> tuple[str, Session]:
        """A new session and its id."""
        session_id = secrets.token_urlsafe(32)
        self._by_id[session_id] = session = Session(secrets.token_urlsafe(32))
        while len(self._by_id) > MOST_SESSIONS:
            self._by_id.popitem(last=False)
        return session_id, session


def _cookie(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            jar.load(value.decode("latin-1"))
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


class Guard:
    """ASGI middleware: gives each request its session (``request.state.session``, a cookie
    for a new one) and every response the security headers."""

    def __init__(self, app: ASGIApp, sessions: Sessions, hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.sessions = sessions
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.hosts and _host_name(scope) not in self.hosts:
            await _refuse_host(send)
            return
        session = self.sessions.find(_cookie(scope))
        new_id = None
        if session is None:
            new_id, session = self.sessions.start()
        scope.setdefault("state", {})["session"] = session

        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                if new_id is not None:
                    cookie = f"{COOKIE}={new_id}; Path=/; HttpOnly; SameSite=Strict"
                    headers.append((b"set-cookie", cookie.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, guarded)


async def _refuse_host(send: Send) -> None:
    body = b"refused: this console answers to its loopback address only"
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
    await send({"type": "http.response.start", "status": 421, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def origin_problem(request: Request) -> str | None:
    """Why a POST does not come from the console's own pages, or ``None`` when it does."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"refused: a request from another site ({site})"
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != own:
        return f"refused: a request from another origin ({origin})"
    return None


def csrf_problem(session: Session, given: str | None) -> str | None:
    """Why a form's CSRF token is not its session's, or ``None`` when it is."""
    if not given or not hmac.compare_digest(given.encode(), session.csrf.encode()):
        return "refused: the form is stale or not the console's (reload the page)"
    return None
