"""Ownership of a consumer: a time-bound lease with a heartbeat and a fencing epoch.

A lease is a row of ``worker.leases``. Whoever takes it bumps the consumer's epoch and sets
``expires_at = now() + ttl``; positions only commit while the committing process's epoch is
current, so a process that lost its lease (a zombie) can never commit. The holder renews the
heartbeat every ``ttl / 3`` on a connection of the lease's own. A standby takes over a lease
whose ``expires_at`` has passed — a holder that froze (SIGSTOP, a hung event loop) or was cut
off — or at once when the holder's session has ended (it crashed), without needing any right
over the holder's session. A holder that could not renew for ``2 * ttl / 3`` stops handling
(self-fencing), so it has stopped before anyone can take its lease over.

Times that decide a takeover are the database server's (``now()``), so clocks of the hosts never
have to agree; the holder's own deadline is measured on its monotonic clock from the moment it
*sent* its last successful renewal, which is never later than the server's heartbeat.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import structlog

from worker.engine import handover
from worker.engine import queries as q
from worker.engine.contact import Contact
from worker.engine.retry import is_disconnection, is_transient
from worker.errors import LeaseLostError
from worker.store.database import Database, connect

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = structlog.get_logger(__name__)

DEFAULT_TTL = 15.0

# Leases this process took over from a holder that stopped renewing, per consumer
# (``worker_lease_takeovers_total``).
takeovers: Counter[str] = Counter()


def owner_id() -> str:
    """Who holds a lease: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Lease:
    """The right to run one consumer; ``epoch`` is valid while ``held``.

    ``ttl`` is how long the lease lasts without a heartbeat; ``retry_interval`` how often a
    standby looks whether the lease has become free.
    """

    def __init__(
        self,
        dsn: str | Database,
        consumer: str,
        *,
        ttl: float = DEFAULT_TTL,
        retry_interval: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self.consumer = consumer
        self.ttl = ttl
        self.retry_interval = retry_interval
        self._conn: asyncpg.Connection[Any] | None = None
        self.epoch = 0
        self.holder: str | None = None  # who holds it, when another process does
        self.lost: str | None = None  # why the lease was lost, once it was
        self._acquired = False
        self._other_size = False  # the last try found the group at another size
        self._valid_until = 0.0
        self._limiter: anyio.CapacityLimiter | None = None  # the group token held with it
        self.contact = Contact()  # whether its round trips reach the database

    @property
    def held(self) -> bool:
        """True while the lease is ours and its last renewal is recent enough to act on."""
        return self._acquired and anyio.current_time() < self._valid_until

    async def _connection(self) -> asyncpg.Connection[Any]:
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(self._dsn)
        return self._conn

    async def open(self) -> None:
        """Open the lease's connection ahead of ``acquire`` (while other start-up work goes
        on); a failure is left for ``acquire`` to meet and report."""
        try:
            await self._connection()
        except Exception as error:
            log.debug("lease connection not opened ahead", consumer=self.consumer, error=str(error))

    async def try_acquire(self, *, keep_connection: bool = False) -> bool:
        """Take the lease if it is free or has expired; True on success.

        The lease's connection stays open while it is held; after a failed try only with
        ``keep_connection`` (a standby that will try again soon; ``release`` closes it).
        """
        try:
            taken = await self._take()
            if not taken and self._other_size:
                taken = await self._hand_over() and await self._take()
            self.contact.reached()
        finally:
            if not self._acquired and not keep_connection:
                self._drop_connection()
        return taken

    async def _take(self) -> bool:
        conn = await self._connection()
        sent = anyio.current_time()
        try:
            async with conn.transaction():
                await conn.execute(q.LEASE_LOCK_TIMEOUT)  # a commit in flight holds the row briefly
                self._other_size = False
                if (refused := await handover.admit(conn, self.consumer)) is not None:
                    return await self._refused(conn, refused)
                row = await conn.fetchrow(q.LEASE_FOR_TAKING, self.consumer)
                if row is not None and not (row["released"] or row["expired"] or row["gone"]):
                    self.holder = row["owner"]
                    return False
                epoch = await conn.fetchval(q.TAKE_LEASE, self.consumer, owner_id(), self.ttl)
        except asyncpg.LockNotAvailableError:
            return False
        if epoch is None:  # another process inserted the first row at the same moment
            return False
        previous, self.epoch, self.holder, self.lost = self.epoch, epoch, None, None
        self._acquired, self._valid_until = True, sent + self._validity()
        if row is not None and not row["released"] and self._own(row, previous):
            log.info("lease taken back", consumer=self.consumer, epoch=epoch)
        elif row is not None and not row["released"]:
            takeovers[self.consumer] += 1
            log.warning(
                "lease taken over",
                consumer=self.consumer,
                reason="holder stopped renewing" if row["expired"] else "holder's session ended",
                previous_owner=row["owner"],
                heartbeat_age=round(row["age"] or 0.0, 3),
                epoch=epoch,
            )
        else:
            log.debug("lease acquired", consumer=self.consumer, epoch=epoch)
        return True

    async def _refused(self, conn: asyncpg.Connection[Any], reason: str) -> bool:
        """Another size is the group's: stand by (``holder`` says why), and say so once."""
        if self.holder != reason:
            log.warning(
                "consumer group of another size: standing by", consumer=self.consumer, reason=reason
            )
        self.holder, self._other_size = reason, True
        return False

    async def _hand_over(self) -> bool:
        """Hand the group over to this process's size once no member of its size of record is
        held (``worker.engine.handover``); whether it was."""
        group = handover.group_of(self.consumer)
        assert group is not None
        try:
            return (
                await handover.hand_over(await self._connection(), *group, force=False) is not None
            )
        except handover.HandOverError as error:
            if self.lost != str(error):
                log.error(
                    "consumer group not handed over", consumer=self.consumer, error=str(error)
                )
            self.lost = str(error)
            return False

    def _own(self, row: asyncpg.Record, previous: int) -> bool:
        """Whether the lease being taken was this one's own (the epoch it last held, not given
        up: its connection was lost, and it reconnected): taken back, not taken over."""
        return bool(previous) and row["owner"] == owner_id() and row["epoch"] == previous

    def _validity(self) -> float:
        """How long after sending a successful renewal the holder may go on acting."""
        return self.ttl * 2 / 3

    async def acquire(
        self, stop: anyio.Event | None = None, limiter: anyio.CapacityLimiter | None = None
    ) -> bool:
        """Wait until the lease is ours (True) or ``stop`` is set (False).

        ``limiter`` caps how many leases of a consumer group this process holds at once: the
        lease is only tried while a token can be taken, and the token goes back with the lease.
        """
        waited = False
        while stop is None or not stop.is_set():
            if limiter is not None:
                await limiter.acquire()
            try:
                if await self.try_acquire(keep_connection=True):
                    self._limiter = limiter
                    return True
            except Exception as error:
                self._failed_round_trip(error, "lease check failed", "lease check timed out")
            finally:
                if limiter is not None and self._limiter is None:
                    limiter.release()
            if not waited and self.holder is not None:
                log.info(
                    "waiting for consumer held by another process",
                    consumer=self.consumer,
                    holder=self.holder,
                )
                waited = True
            with anyio.move_on_after(self.retry_interval):
                if stop is not None:
                    await stop.wait()
                else:
                    await anyio.sleep(self.retry_interval)
        return False

    async def renew(self) -> None:
        """Renew the heartbeat now; ``LeaseLostError`` when another process took the lease
        (or a command fenced it)."""
        sent = anyio.current_time()
        conn = await self._connection()
        renewed = await conn.fetchval(q.RENEW_LEASE, self.consumer, self.epoch, self.ttl)
        self.contact.reached()
        if renewed is None:
            self._fence(f"consumer {self.consumer} was taken over or fenced (epoch {self.epoch})")
            raise LeaseLostError(self.lost)
        self._valid_until = max(self._valid_until, sent + self._validity())

    async def hold(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` while renewing the lease in the background.

        When the lease is lost, or could not be renewed in time, ``work`` is cancelled (its
        transaction rolls back) and ``LeaseLostError`` is raised.
        """
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep, tg.cancel_scope)
            try:
                await work()
            except Exception as error:  # raised after the task group, never wrapped in a group
                failure = error
            tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if self.lost is not None and not self._acquired:
            raise LeaseLostError(self.lost)

    async def _keep(self, work: anyio.CancelScope) -> None:
        """Renew every ``ttl / 3``; cancel ``work`` once the lease is lost or runs out."""
        interval = self.ttl / 3
        while True:
            next_renewal = min(anyio.current_time() + interval, self._valid_until)
            await anyio.sleep_until(next_renewal)
            if anyio.current_time() >= self._valid_until:
                self._fence(
                    f"consumer {self.consumer}: lease not renewed for {self._validity():g}s"
                )
                work.cancel()
                return
            allowed = max(self._valid_until - anyio.current_time(), 0.001)
            try:
                with anyio.fail_after(allowed):
                    await self.renew()
            except LeaseLostError:
                work.cancel()
                return
            except Exception as error:
                timed_out = f"renewal timed out after {allowed:.1f} s"
                self._failed_round_trip(error, "lease renewal failed", timed_out)
                await anyio.sleep(min(interval / 4, 1.0))

    def _failed_round_trip(self, error: Exception, event: str, timed_out: str) -> None:
        """A transient failure is logged (``timed_out`` says a timeout) and the connection
        dropped, to be opened again on the next try; any other error is raised."""
        if not is_transient(error):
            raise error
        self._drop_connection()
        self._trouble(error)
        log.warning(
            event,
            consumer=self.consumer,
            error=_described(error, timed_out),
            error_type=type(error).__name__,
        )

    def _trouble(self, error: BaseException) -> None:
        """A round trip failed: a connection error means the database was not reached."""
        if is_disconnection(error):
            self.contact.lost()

    def _fence(self, reason: str) -> None:
        self.lost, self._acquired = reason, False

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def report(self, state: str) -> None:
        """Record the consumer's state for ``worker status`` (e.g. ``stopped``)."""
        conn = await self._connection()
        await conn.execute(q.REPORT_STATE, self.consumer, state)

    async def release(self, *, close: bool = True) -> None:
        """Give the lease up (if still ours), and its limiter token, and close its connection
        (unless ``close`` is false: it is kept for the next ``acquire``, and ``close`` ends it)."""
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release()
        acquired, self._acquired = self._acquired, False
        conn = self._conn
        if conn is None or conn.is_closed():
            self._conn = None
            return
        with anyio.move_on_after(2, shield=True) as scope:
            try:
                if acquired or self.lost is not None:
                    await conn.execute(q.RELEASE_LEASE, self.consumer, self.epoch)
            except Exception as error:  # the lease runs out on its own in any case
                log.debug("lease release failed", consumer=self.consumer, error=str(error))
                close = True
            finally:
                if close:
                    self._conn = None
                    await conn.close()
        if scope.cancelled_caught:  # the server did not answer in time: the connection is done
            if self._conn is conn:
                self._conn = None
            if not conn.is_closed():
                conn.terminate()

    async def close(self) -> None:
        """Release the lease if it is still ours, and close its connection."""
        await self.release(close=True)


def _described(error: Exception, timed_out: str) -> str:
    """What a failed round trip met, in words: ``timed_out`` for a timeout (whose own text is
    empty), else the error's text (or its type's name, when it has none)."""
    if isinstance(error, TimeoutError):
        return timed_out
    return str(error) or type(error).__name__
