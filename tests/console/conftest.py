"""What the console's tests share: its test application (``app/ledger.toml``) on the test's
database, and a console of it served in this process (Starlette's test client)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from starlette.testclient import TestClient

from worker.ops.app import App
from worker.ops.console.server import create_app
from worker.ops.console.state import Options
from worker.ops.loader import load_domain
from worker.ops.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

LEDGER_CONFIG = Path(__file__).resolve().parent / "app" / "ledger.toml"
CONSUMER = "ledger:ledger"
TOKEN = "console-token-for-tests-0123456789"


def ledger_app(dsn: str) -> App:
    """The ledger application on ``dsn`` (logging left as the tests have it)."""
    settings = load_settings(LEDGER_CONFIG)
    return App(settings, load_domain(settings), dsn)


def console_client(dsn: str, **options: Any) -> Iterator[TestClient]:
    """A test client of the console of the ledger application on ``dsn``, started (its
    lifespan entered) and stopped afterwards."""
    app = create_app(ledger_app(dsn), Options(**options))
    with TestClient(app, base_url="http://127.0.0.1:8800") as client:
        yield client


@pytest.fixture
def read_only(database_dsn: str) -> Iterator[TestClient]:
    """A console started without ``--allow-actions``."""
    yield from console_client(database_dsn, refresh=0.2)


@pytest.fixture
def acting(database_dsn: str) -> Iterator[TestClient]:
    """A console started with ``--allow-actions`` and a token."""
    yield from console_client(
        database_dsn, allow_actions=True, token=TOKEN, operator="alice", refresh=0.2
    )
