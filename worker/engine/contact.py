"""Whether a consumer reaches its database: since when it has not (for its state, the metrics
and ``/readyz``).

The lease marks it on every round trip it makes (a take, a look, a renewal, every third of
``lease_ttl`` or sooner), the consumer on the connection errors it meets; a success clears it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass
class Contact:
    """Since when (``clock()``) the database has not answered; ``None`` while it does."""

    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    lost_since: float | None = None

    @property
    def up(self) -> bool:
        """True unless the last round trip failed for want of a connection."""
        return self.lost_since is None

    def lost(self) -> None:
        """A round trip failed for want of a connection (the first failure starts the clock)."""
        if self.lost_since is None:
            self.lost_since = self.clock()

    def reached(self) -> None:
        """A round trip succeeded."""
        self.lost_since = None

    def down_for(self) -> float:
        """Seconds since the database stopped answering (0 while it answers)."""
        return 0.0 if self.lost_since is None else max(self.clock() - self.lost_since, 0.0)
