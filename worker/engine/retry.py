"""What to do after a failure: a pure policy that returns a decision, never sleeps itself."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

import asyncpg

from worker.errors import DatabaseUnavailableError, MalformedMessageError, ProcessConflictError
from worker.store import backoff

FailureAction = Literal["park", "stop"]


class Retry(Exception):
    """Raised by a handler to ask for another attempt after ``delay`` seconds."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.delay = delay


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Try again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Park:
    """Give up on this message: park it (and its stream's later messages behind it)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Give up on this consumer: it halts and reports not-ready."""


Decision = RetryAfter | Park | Stop

_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57")  # connection, resources, operator intervention
_MISUSE = "another operation is in progress"


def is_transient(error: BaseException) -> bool:
    """Connection loss, serialization failure, deadlock, timeouts: worth retrying forever.

    An error raised while cleaning up after one of those (a rollback on a connection that was
    just lost) counts too: its cause or context is looked at, a few levels deep.
    """
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 4:
        if _transient(current):
            return True
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
        seen += 1
    return False


def _transient(error: BaseException) -> bool:
    if isinstance(error, ProcessConflictError):
        return True  # another consumer changed the instance first: the step runs again
    if isinstance(error, asyncpg.InterfaceError) and _MISUSE in str(error):
        return False  # a second statement on a busy connection: the code's doing, not the wire's
    if isinstance(
        error,
        (
            ConnectionError,
            TimeoutError,
            OSError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # a connection left mid-operation by a lost socket
            DatabaseUnavailableError,
        ),
    ):
        return True
    if isinstance(
        error,
        (
            asyncpg.SerializationError,
            asyncpg.DeadlockDetectedError,
            asyncpg.LockNotAvailableError,
            # The server ended a batch left idle in its transaction (a frozen holder's).
            asyncpg.IdleInTransactionSessionTimeoutError,
        ),
    ):
        return True
    if isinstance(error, asyncpg.PostgresError):
        state = getattr(error, "sqlstate", "") or ""
        return state.startswith(_TRANSIENT_SQLSTATE_CLASSES)
    return False


_CONFLICTS = (
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,
)


def is_disconnection(error: BaseException) -> bool:
    """A transient error that says the database was not reached or did not answer (not a
    conflict between transactions: a serialization failure, a deadlock, a lock not free)."""
    return is_transient(error) and not isinstance(error, _CONFLICTS)


def is_permanent(error: BaseException) -> bool:
    """Errors that no retry can fix: the message itself is bad."""
    return isinstance(error, MalformedMessageError)


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter.

    Transient errors retry indefinitely (or ``max_transient_attempts``); handler errors retry
    until ``max_attempts`` attempts were made, then ``action``; permanent errors go straight
    to ``action``.
    """

    max_attempts: int = 3
    action: FailureAction = "park"
    base_delay: float = 0.1
    max_delay: float = 30.0
    jitter: float = 0.25
    max_transient_attempts: int | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        wait = backoff.delay(attempt, self.base_delay, self.max_delay)
        return wait * (1 + self.jitter * (2 * self.rng.random() - 1))

    def decide(self, error: BaseException, attempt: int) -> Decision:
        """The decision after ``attempt`` failed attempts ended with ``error``."""
        give_up = Park() if self.action == "park" else Stop()
        if is_permanent(error):
            return give_up
        if is_transient(error):
            limit = self.max_transient_attempts
            return (
                give_up
                if limit is not None and attempt >= limit
                else RetryAfter(self.backoff(attempt))
            )
        if attempt >= self.max_attempts:
            return give_up
        if isinstance(error, Retry) and error.delay is not None:
            return RetryAfter(min(error.delay, self.max_delay))
        return RetryAfter(self.backoff(attempt))
