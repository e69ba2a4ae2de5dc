"""The pool a ``Runner`` makes ends, on the server, any session left idle inside a transaction
for longer than a lease lasts (a frozen holder's batch), so its row locks never block the
process that took over."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.test_engine import FAST, Deposited, catch_up, deposit_one
from worker import Context, Domain, on

if TYPE_CHECKING:
    from worker import MessageStore

pytestmark = pytest.mark.anyio


async def test_the_runner_s_pool_sets_idle_in_transaction_session_timeout_to_the_lease_ttl(
    store: MessageStore, database_dsn: str
) -> None:
    """A handler asks the connection its batch runs on: the runner's pool opened it with
    ``idle_in_transaction_session_timeout`` equal to ``lease_ttl``."""
    seen: list[Any] = []
    domain = Domain("test")
    domain.register_event(Deposited, category="acct")

    @domain.projector(name="probe", stream_categories=["acct"])
    class Probe:
        @on(Deposited)
        async def deposited(self, event: Deposited, ctx: Context) -> None:
            seen.append(await ctx.conn.fetchval("SHOW idle_in_transaction_session_timeout"))

    await deposit_one(store, "acct-1", "a1", 0)
    await catch_up(domain, database_dsn, FAST.model_copy(update={"lease_ttl": 7.0}))
    assert seen == ["7s"]
