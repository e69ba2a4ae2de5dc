"""``WORKER_*`` variables: each one is a setting or one of the project's own switches; any other
is refused at configuration load, as an unknown key of ``domain.toml`` is."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from tests.cli import bare_worker
from worker import ConfigurationError, load_settings
from worker.ops.settings import OTHER_VARIABLES

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.upper().startswith("WORKER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def refusal(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_misspelt_variable_is_refused_with_the_one_meant(monkeypatch: pytest.MonkeyPatch) -> None:
    """One underscore instead of two between section and key is refused, naming the variable
    and the one it most likely is; the embedded server is not started instead."""
    message = refusal(monkeypatch, "WORKER_EVENT_STORE_DATABASE_URI", "postgresql://u@db:5432/ms")
    assert "unknown environment variable WORKER_EVENT_STORE_DATABASE_URI" in message
    assert "(did you mean `WORKER_EVENT_STORE__DATABASE_URI`?)" in message


def test_misspelt_key_is_refused_with_the_one_meant(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key its section does not have is refused like the same key in ``domain.toml``."""
    message = refusal(monkeypatch, "WORKER_WORKER__BATCHSIZE", "5")
    assert "(did you mean `WORKER_WORKER__BATCH_SIZE`?)" in message


def test_unknown_variable_like_nothing_is_refused_without_a_guess(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A variable close to no known name is refused all the same, with no suggestion."""
    message = refusal(monkeypatch, "WORKER_ZEBRA", "1")
    assert "unknown environment variable WORKER_ZEBRA" in message
    assert "did you mean" not in message


def test_lowercase_variable_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names are not case-sensitive (as the settings read them), so a lower-case typo counts."""
    message = refusal(monkeypatch, "worker_worker_batch_size", "5")
    assert "worker_worker_batch_size" in message
    assert "(did you mean `WORKER_WORKER__BATCH_SIZE`?)" in message


@pytest.mark.parametrize("name", sorted(OTHER_VARIABLES))
def test_the_projects_own_variables_are_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    """The variables the project reads that are not settings (the config file's path, the test
    and image scripts' switches) load as before."""
    config = tmp_path / "domain.toml"
    config.write_text("[worker]\nbatch_size = 4\n")
    monkeypatch.setenv(name, str(config))
    assert load_settings().worker.batch_size == 4


def test_settings_variables_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key's own variable and a section's JSON variable are settings."""
    monkeypatch.setenv("WORKER_WORKER__BATCH_SIZE", "7")
    monkeypatch.setenv("WORKER_EVENT_STORE", '{"connect_timeout": 3}')
    settings = load_settings()
    assert settings.worker.batch_size == 7
    assert settings.event_store.connect_timeout == 3


def test_cli_refuses_a_misspelt_variable_in_one_line(tmp_path: Path) -> None:
    """``worker config`` (which connects to nothing) exits 1 with one line on stderr."""
    result = bare_worker(
        "config", cwd=tmp_path, WORKER_EVENT_STORE_DATABASE_URI="postgresql://u@db:5432/ms"
    )
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "did you mean `WORKER_EVENT_STORE__DATABASE_URI`?" in lines[0]


@pytest.mark.parametrize(
    "name",
    [
        "WORKER_SERVICE_HOST",
        "WORKER_SERVICE_PORT",
        "WORKER_SERVICE_PORT_METRICS",
        "WORKER_PORT",
        "WORKER_PORT_8000_TCP",
        "WORKER_PORT_8000_TCP_ADDR",
        "WORKER_METRICS_SERVICE_HOST",
    ],
)
def test_kubernetes_service_links_are_allowed(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A Service named `worker...` in the namespace makes Kubernetes set these in every
    container; they are not settings and must not stop the worker."""
    monkeypatch.setenv(name, "10.0.0.1")
    load_settings()
