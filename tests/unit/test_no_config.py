"""A command that needs the application says so when no configuration file names it: where one
was looked for and how to name one."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from tests.cli import bare_worker
from worker import ConfigurationError, load_settings
from worker.ops.loader import load_domain

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.upper().startswith("WORKER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_no_config_file_names_where_it_looked_and_how_to_name_one(tmp_path: Path) -> None:
    """With no ``domain.toml`` and no ``WORKER_CONFIG``, loading the application says that no
    configuration file was found, the path looked at, and ``--config`` / ``WORKER_CONFIG``."""
    with pytest.raises(ConfigurationError) as caught:
        load_domain(load_settings())
    message = str(caught.value)
    assert message.startswith("no configuration file found")
    assert str(tmp_path / "domain.toml") in message
    assert "--config PATH" in message and "WORKER_CONFIG" in message
    assert "\n" not in message


def test_config_file_without_modules_names_the_file(tmp_path: Path) -> None:
    """A configuration file that names no application modules is named, with the keys to set."""
    (tmp_path / "domain.toml").write_text("[worker]\nbatch_size = 5\n")
    with pytest.raises(ConfigurationError) as caught:
        load_domain(load_settings())
    message = str(caught.value)
    assert "domain.toml names no application" in message
    assert "[domain] modules" in message


def test_cli_without_config_file_is_one_line(tmp_path: Path) -> None:
    """``worker status`` in a folder with no configuration exits 1 with that one line, before
    it connects anywhere (no embedded server is started for it)."""
    result = bare_worker("status", cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("worker: error: no configuration file found"), lines[0]
    assert not (tmp_path / ".worker").exists()
