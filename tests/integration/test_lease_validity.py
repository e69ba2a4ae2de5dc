"""The real lease's own deadline: a holder that sends no renewal stops counting the lease as
held two thirds of its ttl after it took it, on its own clock, while the lease is still its
own on the server, so it has stopped acting before anyone can take the lease over."""

from __future__ import annotations

import anyio
import pytest

from worker.engine.lease import Lease, owner_id

pytestmark = pytest.mark.anyio

TTL = 3.0


async def test_the_lease_is_not_held_after_two_thirds_of_its_ttl_without_a_renewal(
    database_dsn: str,
) -> None:
    """Taken on PostgreSQL and never renewed (nothing keeps it: no ``hold``), ``Lease.held``
    turns false no sooner than 2/3 x ttl after the take was sent and before the ttl has
    passed; at that moment a standby still cannot take the lease."""
    lease = Lease(database_dsn, "c:validity", ttl=TTL)
    standby = Lease(database_dsn, "c:validity", ttl=TTL)
    try:
        sent = anyio.current_time()
        assert await lease.try_acquire()
        assert lease.held
        with anyio.fail_after(TTL):
            while lease.held:
                await anyio.sleep(0.005)
        lapsed = anyio.current_time() - sent
        assert lapsed >= TTL * 2 / 3, f"held no more after {lapsed:.2f}s"
        assert not await standby.try_acquire(), "the lease ran out before its holder stopped"
        assert standby.holder == owner_id()
    finally:
        await lease.release()
        await standby.release()
