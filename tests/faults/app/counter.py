"""A tiny application for fault injection: deposits into accounts, and their balances.

Loaded by ``worker run`` from ``tests/faults/app/domain.toml`` (this folder is put on
``sys.path``), never imported by the tests themselves.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import anyio

from worker import BaseEvent, Domain, handle, on

if TYPE_CHECKING:
    from worker import Context

domain = Domain("counter")


@domain.event(category="counter")
class Deposited(BaseEvent):
    """``amount`` was paid into ``account_id``; ``seq`` numbers the account's deposits from 0."""

    account_id: str
    amount: int
    seq: int


SCHEMA = """
CREATE TABLE IF NOT EXISTS balances (
    account_id text PRIMARY KEY,
    total      bigint NOT NULL,
    events     integer NOT NULL,
    last_seq   integer NOT NULL,
    gaps       integer NOT NULL DEFAULT 0
)
"""

# One statement per event, the way a projector is naturally written. ``gaps`` counts deposits
# applied out of sequence (a repeat or a skip), so any double or lost application shows.
_DEPOSIT = """
INSERT INTO balances AS b (account_id, total, events, last_seq, gaps)
VALUES ($1, $2, 1, $3, ($3 <> 0)::int)
ON CONFLICT (account_id) DO UPDATE SET
    total = b.total + EXCLUDED.total,
    events = b.events + 1,
    last_seq = EXCLUDED.last_seq,
    gaps = b.gaps + (EXCLUDED.last_seq <> b.last_seq + 1)::int
"""


# With COUNTER_CONCURRENCY > 1, the projector and the receipts handle that many accounts'
# streams of a batch at once, each handler first waiting on a simulated call to some service.
CONCURRENCY = int(os.environ.get("COUNTER_CONCURRENCY", "1"))


class InFlight:
    """How many handlers wait at once; each new most is logged ("handlers in flight")."""

    def __init__(self) -> None:
        self.now = self.most = 0

    async def wait(self, ctx: Context) -> None:
        """The simulated I/O of a concurrent handler (nothing with concurrency 1)."""
        if CONCURRENCY == 1:
            return
        self.now += 1
        if self.now > self.most:
            self.most = self.now
            ctx.log.info("handlers in flight", count=self.most)
        try:
            await anyio.sleep(0.001)
        finally:
            self.now -= 1


# The consumer-group test runs the projector as a group (COUNTER_GROUP_SIZE); 1 otherwise.
@domain.projector(
    name="balances",
    stream_categories=["counter"],
    group_size=int(os.environ.get("COUNTER_GROUP_SIZE", "1")),
    concurrency=CONCURRENCY,
)
class BalancesProjector:
    """Per account: the sum of its deposits, how many were applied, and the last one's seq."""

    def __init__(self) -> None:
        self.in_flight = InFlight()

    async def setup(self, conn: Any) -> None:
        await conn.execute(SCHEMA)

    @on(Deposited)
    async def deposited(self, event: Deposited, ctx: Context) -> None:
        await self.in_flight.wait(ctx)
        await ctx.conn.execute(_DEPOSIT, event.account_id, event.amount, event.seq)


class Receipt(BaseEvent):
    """Written by ``receipts`` for every deposit: exactly one per deposit, whatever happens."""

    account_id: str
    seq: int


if os.environ.get("COUNTER_RECEIPTS"):
    domain.register_event(Receipt, category="receipt")

    @domain.event_handler(name="receipts", stream_categories=["counter"], concurrency=CONCURRENCY)
    class ReceiptWriter:
        """Emits a receipt per deposit with ``ctx.write`` (exactly once with its position)."""

        def __init__(self) -> None:
            self.in_flight = InFlight()

        @handle(Deposited)
        async def deposited(self, event: Deposited, ctx: Context) -> None:
            await self.in_flight.wait(ctx)
            await ctx.write(
                f"receipt-{event.account_id}", Receipt(account_id=event.account_id, seq=event.seq)
            )


# With COUNTER_NOTICES set to a file, a handler whose only effect is outside the database: it
# appends "account seq" to that file for every deposit (at least once), writing no SQL, so its
# batches begin no transaction and its position may wait (``position_interval``). Each call
# takes 0.1 ms, so 20,000 deposits take it seconds and kills land while it catches up.
if notices := os.environ.get("COUNTER_NOTICES"):

    @domain.event_handler(name="notices", stream_categories=["counter"])
    class Notices:
        def __init__(self) -> None:
            self.fd = os.open(notices, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

        @handle(Deposited)
        def deposited(self, event: Deposited, ctx: Context) -> None:
            time.sleep(0.0001)
            os.write(self.fd, f"{event.account_id} {event.seq}\n".encode())
