"""The console tests' application: ``ledger`` sums ``Entered`` amounts per account into the
read model ``ledger_totals``, and fails on every entry of an account listed in ``poison``
(a table the tests fill and empty: the bug, and its fix).

Loaded by ``worker run`` and by the console from ``ledger.toml`` (this folder is put on
``sys.path``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker import BaseEvent, Domain, Increment, ReadModel, on

if TYPE_CHECKING:
    from worker import Context

domain = Domain("ledger")

POISON = "CREATE TABLE IF NOT EXISTS public.poison (account_id text PRIMARY KEY)"


@domain.event(category="ledger")
class Entered(BaseEvent):
    account_id: str
    amount: int


class LedgerTotal(ReadModel):
    __table__ = "ledger_totals"
    __key__ = "account_id"
    account_id: str
    total: int = 0
    entries: int = 0


@domain.projector(name="ledger", read_models=[LedgerTotal], max_attempts=2)
class LedgerProjector:
    """Adds each entry to its account's total; raises while the account is poisoned."""

    async def setup(self, conn: Any) -> None:
        await conn.execute(POISON)

    @on(Entered)
    async def entered(self, event: Entered, ctx: Context) -> None:
        if await ctx.conn.fetchval(
            "SELECT 1 FROM public.poison WHERE account_id = $1", event.account_id
        ):
            raise RuntimeError(f"account {event.account_id} is poisoned")
        ctx.table(LedgerTotal).add(
            event.account_id, total=Increment(event.amount), entries=Increment(1)
        )
