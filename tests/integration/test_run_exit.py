"""``worker run`` never ends without a last log line saying why and, when it did not finish
cleanly, a non-zero exit code: also when something escapes the consumers' task group."""

from __future__ import annotations

import textwrap
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
