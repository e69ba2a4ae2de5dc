"""What a handler's exception means for its batch: one mapping, for batches and replays alike.

A handler's own error (or data that does not validate: a malformed message) is the message's
failure, retried and parked or stopped on; a transient error (connection lost, serialization
failure) is the batch's, retried whole; a failure of the batch committing behind is neither
(see ``EarlierBatchFailed``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from worker.engine.retry import is_transient
from worker.model.event import malformed

if TYPE_CHECKING:
    from worker.store.message import Message


class HandlerFailed(Exception):
    """The message at ``index`` of a batch raised ``error`` in a handler."""

    def __init__(self, index: int, error: BaseException, cause: BaseException | None) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error
        self.cause = cause  # what to chain it to (``None``: a malformed message stands alone)


class FlushFailed(Exception):
    """Writing a batch's read-model changes failed; which message caused it is unknown."""


class EarlierBatchFailed(Exception):
    """The batch committing behind this one failed: this one wrote nothing, and is applied
    again once that one has been."""

    def __init__(self, position: int, error: BaseException | None) -> None:
        super().__init__(
            f"the batch ending at global position {position} failed to commit: {error!r}"
        )


def handler_failure(index: int, message: Message, error: Exception) -> HandlerFailed | None:
    """The message's failure for ``error`` raised while handling the message at ``index``;
    ``None`` when the error is not the message's (transient, or the batch before failed):
    the caller raises it as it is."""
    if isinstance(error, ValidationError):
        return HandlerFailed(index, malformed(message, error), None)
    if isinstance(error, EarlierBatchFailed) or is_transient(error):
        return None
    return HandlerFailed(index, error, error)


def write_failure(size: int, error: Exception) -> Exception | None:
    """The failure of a batch of ``size`` whose writes (a flush, or the commit) raised
    ``error``: the message's when the batch is one message, else ``FlushFailed`` (found one
    at a time); ``None`` for a transient error, raised as it is."""
    if is_transient(error):
        return None
    if size == 1:
        return HandlerFailed(0, error, error)
    return FlushFailed(str(error))
