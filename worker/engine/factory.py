"""Building consumers: the one place a ``Consumer`` is made from a subscriber's slot and the
settings, for ``worker run``, rebuilds and dead-letter replays alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.engine.backend import PostgresBackend
from worker.engine.consumer import Consumer
from worker.engine.retry import RetryPolicy
from worker.engine.tuning import ConsumerOptions
from worker.engine.wakeups import Waker

if TYPE_CHECKING:
    import asyncpg

    from worker.engine.settings import EngineSettings
    from worker.engine.subscriber import Slot, Subscriber
    from worker.store.database import Database
    from worker.store.message_store import MessageStore


def consumer_options(settings: EngineSettings, subscriber: Subscriber) -> ConsumerOptions:
    """Options for one consumer: the engine's settings, overridden by the subscriber's own."""
    policy = RetryPolicy(
        max_attempts=subscriber.options.max_attempts or settings.max_attempts,
        action=subscriber.options.on_failure or settings.on_failure,
        base_delay=settings.retry_base_delay,
        max_delay=settings.retry_max_delay,
    )
    return ConsumerOptions(
        batch_size=subscriber.options.batch_size or settings.batch_size,
        poll_min=settings.poll_interval_min,
        poll_max=settings.poll_interval_max,
        lease_ttl=settings.lease_ttl,
        policy=policy,
        position_interval=settings.position_interval,
    )


def build_consumer(
    slot: Slot,
    *,
    dsn: str | Database,
    pool: asyncpg.Pool[Any],
    settings: EngineSettings,
    waker: Waker | None = None,
    store: MessageStore | None = None,
    generation: int | None = None,
    pausable: bool = True,
) -> Consumer:
    """The consumer of ``slot`` (of a rebuild's ``generation``, when given); ``pausable``:
    whether ``worker pause`` holds it (``worker run``'s consumers; not a rebuild's)."""
    return Consumer(
        slot.subscriber,
        slot.category,
        PostgresBackend(dsn, pool, store),
        waker=waker or Waker(),
        options=consumer_options(settings, slot.subscriber),
        generation=generation,
        member=slot.member,
        pausable=pausable,
    )
