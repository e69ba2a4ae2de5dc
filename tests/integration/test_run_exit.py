"""``worker run`` never ends without a last log line saying why and, when it did not finish
cleanly, a non-zero exit code: also when something escapes the consumers' task group."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest

from tests.cli import worker
from worker import NewMessage
from worker.ops.crash import EXIT_CRASHED

if TYPE_CHECKING:
    from pathlib import Path

    from worker import MessageStore

pytestmark = pytest.mark.anyio

APP = """
import sys

from worker import BaseEvent, Domain, on

domain = Domain("exits")


@domain.event(category="exits")
class Leave(BaseEvent):
    how: str


@domain.projector(name="leaver", stream_categories=["exits"])
class Leaver:
    @on(Leave)
    async def leave(self, event: Leave, ctx) -> None:
        if event.how == "exit":
            sys.exit(0)
        raise KeyboardInterrupt
"""

CONFIG = """
[domain]
name = "exits"
modules = ["leaver_app"]
instance = "leaver_app:domain"

[worker]
log_format = "json"
"""


def app(tmp_path: Path) -> Path:
    """An application whose handler leaves the process: ``sys.exit(0)``, or an interrupt."""
    (tmp_path / "leaver_app.py").write_text(textwrap.dedent(APP))
    config = tmp_path / "domain.toml"
    config.write_text(textwrap.dedent(CONFIG))
    return config


@pytest.mark.parametrize("how", ["exit", "interrupt"])
async def test_a_handler_that_leaves_the_process_ends_the_run_with_a_reason_and_an_error_code(
    tmp_path: Path, database_dsn: str, store: MessageStore, how: str
) -> None:
    """A handler calls ``sys.exit(0)`` (or raises ``KeyboardInterrupt``) from inside the
    consumers' task group: the worker exits 70, and its last log line is ``worker stopped``
    naming what ended it and where."""
    await store.write("exits-1", NewMessage("Leave", {"how": how}))
    result = await worker(database_dsn, "run", "--until-caught-up", config=app(tmp_path))
    assert result.code == EXIT_CRASHED, result
    stopped = result.logged("worker stopped")
    assert stopped, result
    assert result.errors[-1].startswith("{") and '"worker stopped"' in result.errors[-1], result
    assert stopped[-1]["level"] == "critical" and "leave" in stopped[-1]["error"], result


SLOW_APP = """
import os
import pathlib
import time

from worker import Domain

domain = Domain("slow")
pathlib.Path(os.environ["LOADING_MARKER"]).write_text("loading")
time.sleep(60)  # an application that takes its time to import
"""


def test_a_sigterm_while_the_application_loads_ends_the_run_with_a_reason(
    tmp_path: Path, database_dsn: str
) -> None:
    """SIGTERM before the runner listens for signals (here, while the application's modules
    are imported): the worker exits 143 (128 + SIGTERM), its last log line ``worker stopped``
    with the reason, not killed without a word."""
    (tmp_path / "slow_app.py").write_text(textwrap.dedent(SLOW_APP))
    config = tmp_path / "domain.toml"
    config.write_text(CONFIG.replace("leaver_app", "slow_app").replace("exits", "slow"))
    marker = tmp_path / "loading"
    env = {
        **os.environ,
        "WORKER_EVENT_STORE__DATABASE_URI": database_dsn,
        "LOADING_MARKER": str(marker),
    }
    command = [sys.executable, "-m", "worker", "--config", str(config), "run"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a condition: the marker the application writes
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, (process.returncode, stderr)
    last = json.loads(stderr.strip().splitlines()[-1])
    assert last["event"] == "worker stopped", stderr
    assert last["reason"] == "signal during start-up" and last["signal"] == "SIGTERM", stderr
