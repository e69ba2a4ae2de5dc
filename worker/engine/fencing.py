"""Self-fencing: a consumer commits nothing once its lease could have run out or was taken.

The epoch check in the commit catches a takeover; these catch a holder that merely could not
renew, and a failure that is the fence's doing rather than the handler's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.errors import LeaseLostError

if TYPE_CHECKING:
    from worker.engine.backend import ConsumerLease
    from worker.engine.positions import PositionStore


def check_held(lease: ConsumerLease, name: str) -> None:
    """Refuse to commit once the lease could have run out (``LeaseLostError``)."""
    if not lease.held:
        raise LeaseLostError(lease.lost or f"consumer {name}: lease not held")


async def check_fenced(
    lease: ConsumerLease,
    positions: PositionStore,
    name: str,
    log: Any,
    error: BaseException,
    *,
    confirm: bool = False,
) -> None:
    """A failure met once the lease is lost is the fence's doing, not the handler's (a
    newer holder wrote the message first: a duplicate key): the batch rolls back, and
    nothing is retried, parked or stopped here. ``confirm``: also ask the database whether
    the lease's epoch is still current (a takeover the renewals have not met yet)."""
    if lease.held:
        current = await positions.lease_epoch(name) if confirm else None
        if current is None or current == lease.epoch:
            return
        reason = f"consumer {name} was taken over (epoch {lease.epoch} is no longer current)"
    else:
        reason = lease.lost or f"consumer {name}: lease not held"
    log.warning("lease lost; batch rolled back", error=repr(error), reason=reason)
    raise LeaseLostError(reason) from error
