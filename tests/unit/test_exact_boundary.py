"""Where exact (replay-safe) mode starts and ends, in memory with the engine's own batches: a
batch is exact when its first message is at or below the highest position the consumer ever
committed (a reset leaves that mark where it was), and fast from the next position on."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from worker import BaseEvent, on
from worker.engine.options import SubscriberOptions
from worker.engine.subscriber import build_subscriber
from worker.testing import in_stream, project

if TYPE_CHECKING:
    from worker import Context

pytestmark = pytest.mark.anyio


class Ticked(BaseEvent):
    n: int


class Recorder:
    """Records, per message handled, its global position and whether the batch was exact."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, bool]] = []

    @on(Ticked)
    async def ticked(self, event: Ticked, ctx: Context) -> None:
        self.seen.append((ctx.message.global_position, ctx.exact))


RECORDER = build_subscriber(
    Recorder,
    kind="projector",
    options=SubscriberOptions(name="recorder", stream_categories=["tick"]),
)


async def test_batches_up_to_the_high_water_mark_are_exact_and_the_next_one_is_not() -> None:
    """Five ticks applied (high-water mark 5), the position reset to 2, one more tick written:
    with one message a batch, positions 3, 4 and 5 (the mark itself) are applied in exact
    mode, position 6 (the mark + 1) in fast mode; the first run was fast throughout."""
    first_run = Recorder()
    ticks = [Ticked(n=n) for n in range(5)]
    first = await project(RECORDER, in_stream("tick-1", *ticks), instance=first_run)
    assert first_run.seen == [(p, False) for p in range(1, 6)]
    consumer = "recorder:tick"
    assert first.position_store.positions() == {consumer: 5}
    await first.position_store.set(consumer, 2)

    again = Recorder()
    await project(
        RECORDER, in_stream("tick-1", Ticked(n=5)), after=first, instance=again, batch_size=1
    )
    assert again.seen == [(3, True), (4, True), (5, True), (6, False)]
