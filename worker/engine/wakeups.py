"""Wake-ups: consumers sleep on a ``Waker``; a LISTEN connection wakes them per category.

Polling stays the fallback: a consumer never waits longer than its poll interval, so a lost
notification or a lost LISTEN connection only delays it. The listener reconnects on its own and
wakes everyone after reconnecting, in case something arrived while it was away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker.engine.retry import is_transient
from worker.store import backoff
from worker.store.database import Database, connect

if TYPE_CHECKING:
    import asyncpg
    from anyio.abc import TaskStatus

log = structlog.get_logger(__name__)

CHANNEL = "worker_messages"
# Commands that change a consumer under a running worker (an in-place rebuild, a fence) notify
# its name here, so the worker looks at the consumer's lease and position at once.
CONTROL_CHANNEL = "worker_control"


class Waker:
    """Per-category wake-up counters and events for sleeping consumers.

    A consumer takes a ``mark`` before it reads; ``wait(since=mark)`` returns at once when a
    wake-up came in the meantime, so a notification that arrives while the consumer is busy
    is not lost.
    """

    def __init__(self) -> None:
        self._events: dict[str, anyio.Event] = {}
        self._counts: dict[str, int] = {}
        self._all = 0
        self._recheck: set[str] = set()

    def mark(self, category: str) -> int:
        """The wake-up count of ``category`` now."""
        return self._counts.get(category, 0) + self._all

    def wake(self, category: str) -> None:
        """Wake every consumer sleeping on ``category``."""
        self._counts[category] = self._counts.get(category, 0) + 1
        event = self._events.pop(category, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """Wake every consumer (stop requested, or notifications may have been lost)."""
        self._all += 1
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    def recheck(self, consumer: str) -> None:
        """Ask ``consumer`` to look at its lease and position again, now."""
        self._recheck.add(consumer)
        self.wake_all()

    def recheck_requested(self, consumer: str) -> bool:
        """True once after ``recheck(consumer)``."""
        if consumer in self._recheck:
            self._recheck.discard(consumer)
            return True
        return False

    async def wait(self, category: str, *, seconds: float, since: int | None = None) -> bool:
        """Sleep until woken for ``category`` (after ``since``) or ``seconds`` pass."""
        if since is not None and self.mark(category) != since:
            return True
        event = self._events.get(category)
        if event is None:
            event = self._events[category] = anyio.Event()
        with anyio.move_on_after(seconds):
            await event.wait()
            return True
        return False


class Listener:
    """Holds a LISTEN connection and forwards notifications to a ``Waker``."""

    def __init__(
        self,
        dsn: str | Database,
        waker: Waker,
        *,
        health_interval: float = 5.0,
        retry_max: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._waker = waker
        self._health_interval = health_interval
        self._retry_max = retry_max
        self.connected = False

    def _on_notify(self, _conn: Any, _pid: int, channel: str, payload: object) -> None:
        if channel == CONTROL_CHANNEL:
            self._waker.recheck(str(payload))
        else:
            self._waker.wake(str(payload))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled, reconnecting whenever the connection is lost."""
        started = False
        failures = 0
        while True:
            try:
                conn = await connect(self._dsn)
            except Exception as error:
                if not is_transient(error):
                    raise
                failures += 1
                delay = backoff.delay(failures, 0.1, self._retry_max)
                log.warning("listen connection failed; retrying", error=str(error), delay=delay)
                if not started:
                    task_status.started()
                    started = True
                await anyio.sleep(delay)
                continue
            failures = 0
            try:
                await conn.add_listener(CHANNEL, self._on_notify)
                await conn.add_listener(CONTROL_CHANNEL, self._on_notify)
                self.connected = True
                self._waker.wake_all()
                if not started:
                    task_status.started()
                    started = True
                await self._watch(conn)
            except Exception as error:
                if not is_transient(error):
                    raise
            finally:
                self.connected = False
                conn.terminate()
            log.warning("listen connection lost; reconnecting")

    async def _watch(self, conn: asyncpg.Connection[Any]) -> None:
        """Return when the connection is gone (checked on close and by a periodic ping)."""
        lost = anyio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        while not lost.is_set():
            with anyio.move_on_after(self._health_interval):
                await lost.wait()
                return
            with anyio.fail_after(self._health_interval):
                await conn.fetchval("SELECT 1")
