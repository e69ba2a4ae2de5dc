"""A consumer's lifecycle states: the one list that health, metrics and status take names from."""

from __future__ import annotations

from enum import StrEnum


class ConsumerState(StrEnum):
    """Where a consumer is in its life (its value is what it reports and logs)."""

    STARTING = "starting"  # created, not yet looking for its lease
    WAITING = "waiting"  # a standby: another process holds the lease
    RUNNING = "running"  # applying batches
    REBUILDING = "rebuilding"  # refilling its tables after an in-place rebuild
    CAUGHT_UP = "caught_up"  # every message up to the head handled; waiting for more
    PAUSED = "paused"  # an operator paused it: it holds its lease and handles nothing
    AHEAD = "ahead"  # its position is beyond the category head (an operator set it there)
    STOPPED = "stopped"  # halted on a failure (the ``stop`` action)
    REBUILD_DUE = "rebuild_due"  # not run: its projection's tables no longer fit the code
    DISCONNECTED = "disconnected"  # cannot reach the database (its lease, its reads)
    DONE = "done"  # returned: stopped by a signal, or caught up in ``--until-caught-up``
    # Seen only from outside a process, in ``worker status``:
    NOT_RUNNING = "not_running"  # no process holds it
    REBUILD_PAUSED = "rebuild_paused"  # a rebuild's consumer that no process holds

    @property
    def label(self) -> str:
        """How ``worker status`` shows it."""
        return _LABELS.get(self, self.value.replace("_", " "))


_LABELS = {ConsumerState.AHEAD: "error: position beyond head"}

# Ready (``/readyz``): nothing starting, refilling, misplaced or halted (a pause is deliberate).
READY = frozenset(
    {
        ConsumerState.RUNNING,
        ConsumerState.CAUGHT_UP,
        ConsumerState.WAITING,
        ConsumerState.PAUSED,
        ConsumerState.DONE,
    }
)
# Up (``worker_consumer_up``): handling messages in this process.
UP = frozenset({ConsumerState.RUNNING, ConsumerState.REBUILDING, ConsumerState.CAUGHT_UP})
