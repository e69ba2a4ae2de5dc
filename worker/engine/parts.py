"""What a consumer runs with, built on a ``Backend``: its handlers' instance, lease, batches,
replays, reads, standing, pause switch and deadline deliveries (the consumer itself builds
nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.engine.batch import Batches
from worker.engine.deliveries import Deliveries, NoDeadlines, deliveries_of
from worker.engine.reader import Reader
from worker.engine.replays import Replays
from worker.engine.steps import instance_of

if TYPE_CHECKING:
    from worker.engine.backend import Backend, ConsumerLease, PauseSwitch, Standings
    from worker.engine.cursor import Cursor
    from worker.engine.positions import PositionStore
    from worker.engine.subscriber import Slot
    from worker.engine.tuning import ConsumerOptions
    from worker.engine.wakeups import Waker
    from worker.store.message_store import MessageStore


@dataclass(frozen=True, slots=True)
class Parts:
    """A consumer's collaborators."""

    instance: object  # what its handlers are called on
    lease: ConsumerLease
    batches: Batches
    replays: Replays
    reader: Reader
    standing: Standings
    pause: PauseSwitch
    positions: PositionStore
    store: MessageStore
    waker: Waker
    deliveries: Deliveries | NoDeadlines


def build_parts(
    name: str,
    slot: Slot,
    instance: object | None,
    cursor: Cursor,
    backend: Backend,
    waker: Waker,
    options: ConsumerOptions,
    log: Any,
) -> Parts:
    """The parts of consumer ``name`` of ``slot`` on ``backend``; its handlers on ``instance``
    (default: a new instance of the subscriber's class, or a process manager's steps)."""
    store, positions = backend.store, backend.positions
    if instance is None:
        instance = instance_of(slot.subscriber, backend)
    lease = backend.lease(name, options.lease_ttl)
    batches = Batches(name, slot, instance, backend, lease, options, cursor, cursor.apply, log)
    replays = Replays(batches, backend, lease, options.refresh_interval, log)
    return Parts(
        instance=instance,
        lease=lease,
        batches=batches,
        replays=replays,
        reader=Reader(store, waker, slot, options, log),
        standing=backend.standings,
        pause=backend.pause_switch(name, options.refresh_interval),
        positions=positions,
        store=store,
        waker=waker,
        deliveries=deliveries_of(instance, batches, backend, lease, options, log),
    )
