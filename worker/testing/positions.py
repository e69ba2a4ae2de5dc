"""``MemoryPositionStore``: consumers' positions and lease epochs in memory, for tests.

It implements ``worker.engine.positions.PositionStore`` with ``PostgresPositionStore``'s rules
(the contract suite ``tests/contracts/test_position_store.py`` holds both to them): a commit
goes through only while the committing epoch is the consumer's current lease epoch
(``LeaseLostError`` otherwise) and only from the position the batch started at
(``PositionMovedError``), except a consumer's first commit; the high-water mark is never
lowered. Commits made in an in-memory transaction are undone by its rollback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.errors import LeaseLostError, PositionMovedError
from worker.testing.connection import joined, undo_on

if TYPE_CHECKING:
    from worker.store.types import Connection


class MemoryPositionStore:
    """Positions, high-water marks and lease epochs of consumers, with queries a test can
    assert on: ``committed(consumer, position)``, ``position_of(consumer)``."""

    def __init__(self) -> None:
        self._positions: dict[str, tuple[int, int]] = {}  # consumer -> (position, high water)
        self._epochs: dict[str, int] = {}
        self._history: dict[str, list[int]] = {}  # every committed position, in order

    # -- leases ------------------------------------------------------------------------------

    def take_lease(self, consumer: str) -> int:
        """Take the consumer's lease with a new epoch (1 for the first) and return it: commits
        with any earlier epoch fail from now on, as after a takeover."""
        epoch = self._epochs.get(consumer, 0) + 1
        self._epochs[consumer] = epoch
        return epoch

    def epoch(self, consumer: str) -> int | None:
        """The consumer's current lease epoch, or ``None`` when no lease was ever taken."""
        return self._epochs.get(consumer)

    # -- PositionStore -----------------------------------------------------------------------

    async def load(self, consumer: str) -> int:
        """The committed position, 0 when the consumer never committed."""
        return self._positions.get(consumer, (0, 0))[0]

    async def lease_epoch(self, consumer: str) -> int | None:
        """As ``epoch``, for the engine (``PositionStore``)."""
        return self._epochs.get(consumer)

    async def lease_epoch_in(self, conn: Connection, consumer: str) -> int | None:
        """As ``epoch``, in the caller's transaction (``PositionStore``)."""
        return self._epochs.get(consumer)

    async def high_water(self, consumer: str) -> int:
        """The highest position ever committed (above ``load`` after a reset)."""
        return self._positions.get(consumer, (0, 0))[1]

    async def commit(
        self, conn: Connection, consumer: str, position: int, epoch: int, expected: int
    ) -> None:
        """Record ``position`` in the caller's transaction, if ``epoch`` is the consumer's
        lease epoch and the committed position is still ``expected``."""
        joined(conn)
        if self._epochs.get(consumer) != epoch:
            raise LeaseLostError(
                f"consumer {consumer!r} lost its lease (epoch {epoch} is no longer current)"
            )
        before = self._positions.get(consumer)
        if before is not None and before[0] != expected:
            raise PositionMovedError(
                f"consumer {consumer!r} is no longer at position {expected}: starting again "
                "from its committed position"
            )
        self._record(conn, consumer, position)

    async def set(self, consumer: str, position: int) -> None:
        """Set a position outside any batch (as ``worker reset`` does)."""
        self._record(None, consumer, position)

    def _record(self, conn: object, consumer: str, position: int) -> None:
        before = self._positions.get(consumer)
        high = position if before is None else max(before[1], position)
        self._positions[consumer] = (position, high)
        history = self._history.setdefault(consumer, [])
        history.append(position)

        def undo() -> None:
            history.pop()
            if before is None:
                del self._positions[consumer]
            else:
                self._positions[consumer] = before

        undo_on(conn, undo)

    # -- what a test asserts -----------------------------------------------------------------

    def committed(self, consumer: str, position: int) -> bool:
        """True when ``position`` was committed (or set) for ``consumer`` and not rolled back."""
        return position in self._history.get(consumer, ())

    def position_of(self, consumer: str) -> int | None:
        """The consumer's committed position, or ``None`` when it never committed."""
        found = self._positions.get(consumer)
        return None if found is None else found[0]

    def positions(self) -> dict[str, int]:
        """Every consumer's committed position."""
        return {consumer: found[0] for consumer, found in self._positions.items()}

    def history(self, consumer: str) -> list[int]:
        """Every position committed (or set) for ``consumer``, in order."""
        return list(self._history.get(consumer, ()))
