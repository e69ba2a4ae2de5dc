"""The README's first application, as written: its files in an empty folder, its tests, then its
commands (`worker db install`, the script, `worker run --until-caught-up`, `worker status`)
against a fresh database."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import asyncpg

from tests.docs.snippets import ROOT, blocks

if TYPE_CHECKING:
    from collections.abc import Mapping

README = ROOT / "README.md"
BIN = Path(sys.executable).parent


def write_files(project: Path) -> list[str]:
    """Write every ``<!-- file: NAME -->`` block of the README into ``project``."""
    names = []
    for block in blocks(README):
        if block.marker == "file":
            (project / block.argument).write_text(block.code)
            names.append(block.argument)
    return names


def commands() -> list[list[str]]:
    """The shell lines of the README's last step, but the `worker run` that runs until Ctrl-C."""
    (block,) = [b for b in blocks(README) if b.language == "sh" and "place_orders.py" in b.code]
    lines = [line.split("#")[0].strip() for line in block.code.splitlines()]
    return [shlex.split(line) for line in lines if line and line != "worker run"]


def run(argv: list[str], project: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    program = sys.executable if argv[0] == "python" else str(BIN / argv[0])
    return subprocess.run(
        [program, *argv[1:]],
        cwd=project,
        env={**env, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def summary(dsn: str) -> list[tuple[str, str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT customer, status, events FROM order_summary ORDER BY 1")
    finally:
        await conn.close()
    return [(row["customer"], row["status"], row["events"]) for row in rows]


def test_the_first_application_runs_as_written(tmp_path: Path, database_dsn: str) -> None:
    """From an empty folder: the README's files pass their own tests (4, in memory), and its
    commands install, write two orders, project them and show the consumer caught up."""
    project = tmp_path / "shop"
    project.mkdir()
    names = write_files(project)
    assert names == ["shop.py", "views.py", "test_shop.py", "domain.toml", "place_orders.py"]
    env = {**os.environ, "WORKER_EVENT_STORE__DATABASE_URI": database_dsn}
    env.pop("WORKER_CONFIG", None)
    tests = run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"], project, env)
    assert "4 passed" in tests.stdout, tests.stdout[-3000:] + tests.stderr[-3000:]
    steps = commands()
    assert [step[:2] for step in steps] == [
        ["worker", "db"],
        ["python", "place_orders.py"],
        ["worker", "run"],
        ["worker", "status"],
    ]
    for step in steps:
        done = run(step, project, env)
        assert done.returncode == 0, f"{step}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    assert anyio.run(summary, database_dsn) == [("Ada", "PENDING", 1), ("Grace", "CONFIRMED", 2)]
