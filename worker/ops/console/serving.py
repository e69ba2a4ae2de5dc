"""Serving the console with Uvicorn: the checks before it starts, and the line saying where
it listens."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import structlog

from worker.errors import UsageError
from worker.ops.console.security import allowed_hosts, check_start
from worker.ops.console.state import Options

if TYPE_CHECKING:
    from worker.ops.app import App

log = structlog.get_logger("worker.console")

# Seconds open pages' live streams get to end when the console stops.
CLOSE_WITHIN = 1


def serve(app: App, host: str, port: int, *, allow_actions: bool) -> None:
    """Serve the console of ``app`` on ``host:port`` until SIGINT/SIGTERM; refused first
    (``UsageError``) where it would be open without a token (``check_start``)."""
    section = app.settings.console
    token = None if section.token is None else section.token.get_secret_value()
    check_start(host, token, allow_actions)
    try:
        import uvicorn

        from worker.ops.console.server import create_app
    except ImportError as error:
        raise UsageError(
            f"the console needs the `console` extra ({error.name} is missing): "
            "pip install 'worker[console]'"
        ) from None
    options = Options(allow_actions, token, section.operator, section.refresh, allowed_hosts(host))
    config = uvicorn.Config(
        create_app(app, options),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=CLOSE_WITHIN,
    )
    server = uvicorn.Server(config)
    sock = _listen(host, port)
    where = sock.getsockname()
    log.info("console listening", url=f"http://{where[0]}:{where[1]}/", actions=allow_actions)
    with sock:
        server.run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (for port 0, the one the system chose), so the
    console can say where it listens before it serves; ``UsageError`` when it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise UsageError(f"the console cannot listen on {host}:{port}: {error.strerror}") from None
    return sock
