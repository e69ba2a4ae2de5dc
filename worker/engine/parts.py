"""What a consumer runs with, built on a ``Backend``: its lease, batches, replays, reads,
standing and pause switch (the consumer itself builds nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.engine.batch import Batches
from worker.engine.reader import Reader
from worker.engine.replays import Replays

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

    lease: ConsumerLease
    batches: Batches
    replays: Replays
    reader: Reader
    standing: Standings
    pause: PauseSwitch
    positions: PositionStore
    store: MessageStore
    waker: Waker


def build_parts(
    name: str,
    slot: Slot,
    instance: object,
    cursor: Cursor,
    backend: Backend,
    waker: Waker,
    options: ConsumerOptions,
    log: Any,
) -> Parts:
    """The parts of consumer ``name`` of ``slot`` (handlers: ``instance``) on ``backend``."""
    store, positions = backend.store, backend.positions
    lease = backend.lease(name, options.lease_ttl)
    batches = Batches(name, slot, instance, backend, lease, options, cursor, cursor.apply, log)
    replays = Replays(batches, backend, lease, options.refresh_interval, log)
    return Parts(
        lease=lease,
        batches=batches,
        replays=replays,
        reader=Reader(store, waker, slot, options, log),
        standing=backend.standings,
        pause=backend.pause_switch(name, options.refresh_interval),
        positions=positions,
        store=store,
        waker=waker,
    )
