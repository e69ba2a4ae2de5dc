"""A message whose handler failed in its batch: retried on its own, then parked or the consumer
stopped, as its retry policy decides (``worker.engine.retry``).

Before each step the lease is checked (``worker.engine.fencing``): a failure met once the lease
is gone is the lease's, not the handler's. With tracing on, each retry and the parking are
noted in spans of their own (``worker.engine.spans``).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio

from worker.engine.dead_letters import Failure
from worker.engine.fencing import check_fenced
from worker.engine.outcomes import HandlerFailed
from worker.engine.retry import Park, RetryAfter, Stop
from worker.errors import ConsumerStoppedError
from worker.store.metadata import correlation_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from contextlib import AbstractContextManager

    from worker.engine.backend import ConsumerLease
    from worker.engine.positions import PositionStore
    from worker.engine.retry import RetryPolicy
    from worker.engine.spans import Spans
    from worker.engine.stats import ConsumerStats
    from worker.store.message import Message


class Retries:
    """One consumer's failing messages (see the module doc). ``apply`` applies messages in a
    transaction, ``park`` parks one with its failure, ``drain`` waits for a batch committing
    behind; ``attempt`` is the attempt at the messages being applied (a retry's: 2 and on)."""

    def __init__(
        self,
        name: str,
        fence: tuple[ConsumerLease, PositionStore, str],
        policy: RetryPolicy,
        stats: ConsumerStats,
        spans: Spans | None,
        apply: Callable[[Sequence[Message]], Awaitable[None]],
        park: Callable[[Message, Failure], Awaitable[None]],
        drain: Callable[[], Awaitable[None]],
        log: Any,
    ) -> None:
        self.name, self._fence, self._policy = name, fence, policy
        self._stats, self._spans, self._log = stats, spans, log
        self._apply, self._park, self._drain = apply, park, drain
        self.attempt = 1

    async def retry_or_park(self, message: Message, error: BaseException) -> None:
        """Retry ``message`` on its own, then park it or stop the consumer."""
        first_failed = datetime.now(UTC)
        attempt = 1
        bound = self._log.bind(
            stream_name=message.stream_name,
            position=message.position,
            global_position=message.global_position,
            type=message.type,
            correlation=correlation_of(message),
        )
        await check_fenced(*self._fence, bound, error, confirm=True)
        self._stats.handler_failures += 1
        while isinstance(decision := self._policy.decide(error, attempt), RetryAfter):
            await check_fenced(*self._fence, bound, error)
            with self._noted("retry", message, error, attempt, decision.delay):
                bound.warning(
                    "handler failed; retrying",
                    error=repr(error),
                    attempt=attempt,
                    delay=round(decision.delay, 3),
                )
            await anyio.sleep(decision.delay)
            self.attempt = attempt + 1
            try:
                await self._apply([message])
                return
            except HandlerFailed as failed:
                error, attempt = failed.error, attempt + 1
                self._stats.handler_failures += 1
            finally:
                self.attempt = 1
        await check_fenced(*self._fence, bound, error, confirm=True)
        if isinstance(decision, Park):
            await self._park(message, Failure(error, attempt, first_failed))
            with self._noted("park", message, error, attempt):
                bound.error("message parked", error=repr(error), attempts=attempt)
            return
        assert isinstance(decision, Stop)
        await self._drain()  # the batch committing behind, if any, is applied before the stop
        bound.error(
            "consumer stopped: handler keeps failing and the failure action is 'stop'",
            error=repr(error),
            attempts=attempt,
        )
        raise ConsumerStoppedError(f"consumer {self.name} stopped at {message.global_position}")

    def _noted(
        self,
        verb: Literal["retry", "park"],
        message: Message,
        error: BaseException,
        attempt: int,
        delay: float | None = None,
    ) -> AbstractContextManager[Any]:
        """With tracing on, a span saying that ``message`` is retried or parked (logs made in
        it carry its ids); else nothing."""
        if self._spans is None:
            return contextlib.nullcontext()
        return self._spans.noted(verb, message, error, attempt, delay)
