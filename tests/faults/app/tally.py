"""A projection with a read model, for the operator-command tests: ``tallies`` sums ``Tallied``
events per account into ``tally_totals``.

Loaded by the CLI from ``tally.toml``; the tests also import it to run the same projector in
their own process, where ``GATE`` can hold the handler at one global position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker import BaseEvent, Domain, Increment, ReadModel, on

if TYPE_CHECKING:
    import anyio

    from worker import Context

domain = Domain("tally")

# Set by a test (in its own process only): the handler waits for GATE at global position GATE_AT.
GATE: anyio.Event | None = None
GATE_AT = 0
REACHED: anyio.Event | None = None


@domain.event(category="tally")
class Tallied(BaseEvent):
    account_id: str
    amount: int


class TallyTotal(ReadModel):
    __table__ = "tally_totals"
    __key__ = "account_id"
    account_id: str
    total: int = 0
    events: int = 0


@domain.projector(name="tallies", read_models=[TallyTotal])
class TallyProjector:
    @on(Tallied)
    async def tallied(self, event: Tallied, ctx: Context) -> None:
        if GATE is not None and ctx.message.global_position == GATE_AT:
            if REACHED is not None:
                REACHED.set()
            await GATE.wait()
        ctx.table(TallyTotal).add(
            event.account_id, total=Increment(event.amount), events=Increment(1)
        )
