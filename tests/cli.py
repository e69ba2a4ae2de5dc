"""Running the ``worker`` command line as a process, the way an operator does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio

ROOT = Path(__file__).resolve().parent.parent
FAULTS_APP = ROOT / "tests" / "faults" / "app" / "domain.toml"
EXAMPLE_APP = ROOT / "domain.toml"


@dataclass(frozen=True)
class Result:
    """How a command ended and what it printed."""

    code: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        """The non-empty lines on stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]

    def logged(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines on stderr whose event is ``event``."""
        found = []
        for line in self.errors:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == event:
                found.append(entry)
        return found

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


async def worker(
    dsn: str, *args: str, config: Path = FAULTS_APP, within: float = 90, **env: str
) -> Result:
    """``worker --config CONFIG ARGS`` on ``dsn``, with ``env`` added to the environment."""
    environment = {**os.environ, "WORKER_EVENT_STORE__DATABASE_URI": dsn, **env}
    command = [sys.executable, "-m", "worker", "--config", str(config), *args]
    with anyio.fail_after(within):
        done = await anyio.run_process(command, env=environment, cwd=ROOT, check=False)
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


def bare_worker(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``worker ARGS`` in ``cwd`` with none of this process's ``WORKER_*`` variables, only
    ``env``'s: what a user's shell with nothing configured runs."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("WORKER_")}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, **env},
        timeout=120,
        check=False,
    )


def as_user(dsn: str, user: str, password: str | None = None) -> str:
    """The same server and database, another user (and password)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    credentials = user if password is None else f"{user}:{password}"
    return urlunsplit(parts._replace(netloc=f"{credentials}@{host}"))
