"""An application for the telemetry crash test: each ``Ordered`` gets a ``Receipted``.

Loaded by ``worker run`` from ``tests/faults/app/traced.toml``. While the file named by
``TRACED_HOLD`` exists, the handler writes its receipt, logs ``holding`` and waits forever
inside its batch's transaction, so the test can kill the process mid-message.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio

from worker import BaseEvent, Domain, handle

if TYPE_CHECKING:
    from worker import Context

domain = Domain("traced")
HOLD = os.environ.get("TRACED_HOLD")


@domain.event(category="order")
class Ordered(BaseEvent):
    order: str


@domain.event(category="receipt")
class Receipted(BaseEvent):
    order: str


@domain.event_handler(name="receipts", stream_categories=["order"])
class Receipts:
    @handle(Ordered)
    async def ordered(self, event: Ordered, ctx: Context) -> None:
        await ctx.write(f"receipt-{event.order}", Receipted(order=event.order))
        if HOLD and await anyio.Path(HOLD).exists():
            ctx.log.info("holding", order=event.order)
            await anyio.sleep_forever()
