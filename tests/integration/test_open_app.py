"""``worker.open_app``: the application domain.toml configures, opened as the commands open it,
for application code (the demo, benchmarks) that runs the worker in its own process."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import structlog

from worker import open_app

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

APP = """
[domain]
name = "tally"
modules = ["tests.faults.app.tally"]
instance = "tests.faults.app.tally:domain"

[event_store]
database_uri = "{dsn}"
"""


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """``open_app`` configures structlog for the process: put back what the tests had."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def config(tmp_path: Path, database_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("WORKER_EVENT_STORE__DATABASE_URI", raising=False)
    path = tmp_path / "domain.toml"
    path.write_text(APP.format(dsn=database_dsn))
    return path


async def test_open_app_loads_the_domain_and_opens_a_checked_pool(
    config: Path, database_dsn: str
) -> None:
    """The domain named by ``[domain] instance`` is loaded, the DSN is the configured one, and
    its pool answers on the installed database."""
    app = open_app(config)
    pool = await app.pool()
    try:
        assert await pool.fetchval("SELECT count(*) FROM worker.positions") == 0
    finally:
        await pool.close()
    assert ([s.name for s in app.domain.subscribers], app.dsn) == (["tallies"], database_dsn)


async def test_open_app_configures_logging_from_the_settings(config: Path) -> None:
    """``[worker] log_level`` (here overridden as ``load_settings`` takes it) filters the logs."""
    open_app(config, worker={"log_level": "warning"})
    try:
        logger = structlog.get_config()["wrapper_class"]
        assert logger.__name__ == "BoundLoggerFilteringAtWarning"
    finally:
        structlog.reset_defaults()


async def test_the_runner_of_an_app_runs_its_domain(config: Path) -> None:
    """``App.runner`` is the worker ``worker run`` would run: the app's domain and settings."""
    app = open_app(config)
    runner = app.runner(only=["tallies"])
    assert (runner.domain, runner.dsn, runner.only) == (app.domain, app.dsn, ["tallies"])
