"""The pytest plugin serves a project of its own: installed with the package, no conftest."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

from worker.store.database import stop_embedded

PROJECT = Path(__file__).resolve().parents[1] / "fixtures" / "user_project"


def test_the_plugin_is_registered_by_installing_the_package() -> None:
    """The installed distribution declares the plugin for pytest (entry point ``pytest11``)."""
    plugins = {e.value for e in importlib.metadata.entry_points(group="pytest11")}
    assert "worker.testing.plugin" in plugins


def test_a_project_outside_this_repository_uses_the_fixtures(tmp_path: Path) -> None:
    """A copy of a small application and its tests, in a folder of its own with no conftest,
    passes with the plugin's fixtures: a fresh database per test, ``run_until_caught_up``."""
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    assert not list(project.glob("conftest.py"))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
            cwd=project,
            env={**os.environ, "PYTHONPATH": str(project)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:  # with no server named, the project's run started an embedded one of its own
        stop_embedded(project / ".worker" / "test-postgres")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 passed" in result.stdout, result.stdout
