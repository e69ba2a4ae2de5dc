"""The retry policy is a pure function of (error, attempt): decisions as data."""

from __future__ import annotations

import random

import asyncpg
import pytest

from worker.engine.retry import Park, Retry, RetryAfter, RetryPolicy, Stop, is_transient
from worker.errors import MalformedMessageError


def policy(**kw: object) -> RetryPolicy:
    return RetryPolicy(rng=random.Random(7), **kw)  # type: ignore[arg-type]


def test_handler_errors_retry_with_growing_capped_jittered_delays() -> None:
    p = policy(max_attempts=10, base_delay=0.1, max_delay=1.0, jitter=0.25)
    delays = [p.decide(ValueError("x"), attempt) for attempt in range(1, 9)]
    assert all(isinstance(d, RetryAfter) for d in delays)
    values = [d.delay for d in delays if isinstance(d, RetryAfter)]
    for attempt, value in enumerate(values, start=1):
        nominal = min(1.0, 0.1 * 2 ** (attempt - 1))
        assert nominal * 0.75 <= value <= nominal * 1.25
    assert max(values) <= 1.25


def test_handler_errors_give_up_after_max_attempts_with_the_configured_action() -> None:
    assert isinstance(policy(max_attempts=3).decide(ValueError(), 2), RetryAfter)
    assert policy(max_attempts=3).decide(ValueError(), 3) == Park()
    assert policy(max_attempts=3, action="stop").decide(ValueError(), 3) == Stop()


def test_permanent_errors_skip_the_retries() -> None:
    error = MalformedMessageError("s-1", 0, "T", "bad")
    assert policy(max_attempts=5).decide(error, 1) == Park()


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError(),
        TimeoutError(),
        asyncpg.SerializationError("serialization"),
        asyncpg.DeadlockDetectedError("deadlock"),
        asyncpg.AdminShutdownError("terminating connection"),
        asyncpg.ConnectionDoesNotExistError("closed"),
    ],
)
def test_transient_errors_retry_indefinitely(error: BaseException) -> None:
    assert is_transient(error)
    decision = policy(max_attempts=1).decide(error, 1000)
    assert isinstance(decision, RetryAfter) and decision.delay <= 30.0 * 1.25


def test_transient_retries_can_be_capped() -> None:
    assert policy(max_transient_attempts=4).decide(TimeoutError(), 4) == Park()


def test_a_handler_can_ask_for_its_own_delay() -> None:
    assert policy(max_attempts=3).decide(Retry(delay=2.5), 1) == RetryAfter(2.5)
    assert policy(max_attempts=3, max_delay=1.0).decide(Retry(delay=9), 1) == RetryAfter(1.0)


def test_unique_violation_is_not_transient() -> None:
    assert not is_transient(asyncpg.UniqueViolationError("dup"))


def test_a_second_statement_on_a_busy_connection_is_not_transient() -> None:
    """A handler running two statements at once on one connection is a bug no retry fixes
    (retrying would loop forever); a closed connection is worth retrying."""
    busy = asyncpg.InterfaceError("cannot perform operation: another operation is in progress")
    assert not is_transient(busy)
    assert is_transient(asyncpg.InterfaceError("cannot perform operation: connection is closed"))


def test_an_error_while_cleaning_up_after_a_lost_connection_is_transient() -> None:
    """A rollback failing on a connection that was just lost retries like the loss itself."""
    try:
        try:
            raise asyncpg.ConnectionDoesNotExistError("connection was closed")
        except asyncpg.ConnectionDoesNotExistError:
            raise RuntimeError("cannot switch to state 15") from None
    except RuntimeError as suppressed:
        assert not is_transient(suppressed)  # `from None`: the context does not count
    try:
        try:
            raise asyncpg.ConnectionDoesNotExistError("connection was closed")
        except asyncpg.ConnectionDoesNotExistError:
            raise RuntimeError("rollback failed")  # noqa: B904 - the implicit context is the point
    except RuntimeError as during:
        assert is_transient(during)
    assert is_transient(asyncpg.InternalClientError("another operation is in progress"))
