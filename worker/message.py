"""Messages as MessageDB stores them, and messages about to be written."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime


@dataclass(frozen=True, slots=True)
class Message:
    """One row of ``message_store.messages``, with data and metadata decoded once.

    The field order is MessageDB's column order, so a row builds a ``Message`` positionally.
    ``time`` is timezone-aware UTC (MessageDB stores UTC without a zone).
    """

    id: str
    stream_name: str
    type: str
    position: int
    global_position: int
    data: dict[str, Any]
    metadata: dict[str, Any] | None
    time: datetime

    @property
    def category(self) -> str:
        """The stream's category: the text before the first ``-``."""
        return self.stream_name.split("-", 1)[0]


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to write: its id is chosen here, so it is known before the write commits."""

    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
