"""The engine's batches on the in-memory stand-ins: what a batch commits, and when it refuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest
import structlog

from worker import BaseEvent, Context, NewMessage, on
from worker.engine.batch import Batches
from worker.engine.cursor import Cursor
from worker.engine.options import SubscriberOptions
from worker.engine.subscriber import Slot, build_subscriber
from worker.engine.tuning import ConsumerOptions
from worker.errors import LeaseLostError
from worker.testing import (
    MemoryBackend,
    MemoryMessageStore,
    MemoryPositionStore,
    MemoryReadModels,
    MemoryTransactions,
)

pytestmark = pytest.mark.anyio


class Ticked(BaseEvent):
    n: int


@dataclass
class Lapsed:
    """A lease its holder could not renew in time: held no more, though no one took it."""

    epoch: int
    held: bool = False
    lost: str | None = "could not renew the lease"


class Clock:
    @on(Ticked)
    def ticked(self, event: Ticked, ctx: Context) -> None:
        pass


@pytest.mark.parametrize("kind", ["Ticked", "Unhandled"])
async def test_a_holder_that_could_not_renew_commits_no_batch(kind: str) -> None:
    """Self-fencing holds for every batch: one its handlers take, and one no handler takes
    (whose position moves in a statement of its own)."""
    store = MemoryMessageStore()
    for n in range(3):
        await store.write("clock-1", NewMessage(kind, {"n": n}))
    subscriber = build_subscriber(
        Clock,
        kind="projector",
        options=SubscriberOptions(name="clock", stream_categories=["clock"]),
    )
    positions, transactions = MemoryPositionStore(), MemoryTransactions()
    read_models = MemoryReadModels()
    backend = MemoryBackend(
        store, positions=positions, tables=read_models, transactions=transactions
    )
    lease = cast("Any", Lapsed(positions.take_lease("clock:clock")))
    cursor = Cursor()
    batches = Batches(
        "clock:clock",
        Slot(subscriber, "clock"),
        Clock(),
        backend,
        lease,
        ConsumerOptions(),
        cursor,
        cursor.apply,
        structlog.get_logger(),
    )
    batch = await store.read_category("clock", 1, 10)
    with pytest.raises(LeaseLostError, match="could not renew"):
        await batches.apply(batch)
    assert positions.position_of("clock:clock") is None
    assert cursor.position == 0
    assert transactions.committed == transactions.statements == 0
