"""A standby in a run that ends once caught up (``worker run --until-caught-up``).

Beside a running worker that holds the lease, such a standby would wait for ever: the holder
never lets go. It gives up instead once ``done`` says the consumer is caught up under the
holder's lease (looked at every ``retry_interval`` of the lease), so the run can end.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from worker.engine.backend import ConsumerLease, Standings
    from worker.engine.positions import PositionStore
    from worker.engine.reader import Reader


async def acquire(
    consumer: Standby,
    stop: anyio.Event,
    limiter: anyio.CapacityLimiter | None,
    *,
    gives_up: bool,
) -> bool:
    """Wait for ``consumer``'s lease; ``gives_up`` (a run until caught up): give up (False)
    once it is caught up under another process's lease."""
    if not gives_up:
        return await consumer.lease.acquire(stop, limiter)
    done = partial(done_elsewhere, consumer)
    return await acquire_unless_done(consumer.lease, stop, limiter, done)


async def acquire_unless_done(
    lease: ConsumerLease,
    stop: anyio.Event,
    limiter: anyio.CapacityLimiter | None,
    done: Callable[[], Awaitable[bool]],
) -> bool:
    """``lease.acquire(stop, limiter)``, given up (False) once another process holds the
    lease and ``done()`` is true."""
    taken = False

    async def take() -> None:
        nonlocal taken
        taken = await lease.acquire(stop, limiter)
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        while not stop.is_set():
            with anyio.move_on_after(lease.retry_interval):
                await stop.wait()
            if lease.holder is not None and await done():
                break
        tg.cancel_scope.cancel()
    return taken


class Standby(Protocol):
    """What ``done_elsewhere`` asks of a consumer."""

    name: str
    pausable: bool
    lease: ConsumerLease
    positions: PositionStore
    standing: Standings
    reader: Reader
    log: Any


async def done_elsewhere(consumer: Standby) -> bool:
    """Nothing after the committed position for ``consumer`` (or an operator paused it): the
    process holding the lease has caught up, and a run until caught up may end."""
    name = consumer.name
    position = await consumer.positions.load(name)
    paused = consumer.pausable and await consumer.standing.is_paused(name)
    if not paused and await consumer.reader.read(position, 1):
        return False
    consumer.log.info(
        "caught up under another process's lease",
        holder=consumer.lease.holder,
        position=position,
        paused=paused,
    )
    return True
