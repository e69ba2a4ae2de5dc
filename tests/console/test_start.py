"""Where ``worker console`` refuses to start: open to other machines, or offering actions,
with no token. One line on stderr and exit 2, before anything listens."""

from __future__ import annotations

import pytest

from tests.cli import worker
from tests.console.conftest import LEDGER_CONFIG
from worker.errors import UsageError
from worker.ops.console.chart import sparkline
from worker.ops.console.security import check_start, is_loopback

pytestmark = pytest.mark.anyio


async def test_listening_beyond_the_loopback_without_a_token_is_refused(
    database_dsn: str,
) -> None:
    done = await worker(database_dsn, "console", "--host", "0.0.0.0", config=LEDGER_CONFIG)
    assert done.code == 2, done
    assert done.errors == [
        "worker: error: the console would listen on 0.0.0.0, reachable from other machines, "
        "with no token: set WORKER_CONSOLE__TOKEN, or listen on 127.0.0.1"
    ], done


async def test_actions_without_a_token_are_refused(database_dsn: str) -> None:
    done = await worker(database_dsn, "console", "--allow-actions", config=LEDGER_CONFIG)
    assert done.code == 2, done
    assert done.errors == [
        "worker: error: --allow-actions needs a token: set WORKER_CONSOLE__TOKEN"
    ], done


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.5"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)
    check_start(host, None, allow_actions=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "console.example"])
def test_other_addresses_need_a_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(UsageError, match="reachable from other machines"):
        check_start(host, None, allow_actions=False)
    check_start(host, "a-token", allow_actions=True)


def test_the_rate_chart_scales_to_the_highest_rate() -> None:
    """The newest point is on the right; the highest rate at the top, 0 at the bottom."""
    svg = sparkline([0.0, 5.0, 10.0])
    assert 'points="0.0,23.0 60.0,12.0 120.0,1.0"' in svg
    assert "<title>10.0 msg/s now, 10.0 at most in the last minute</title>" in svg
    assert "<polyline" not in sparkline([])
