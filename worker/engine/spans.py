"""A consumer's spans, when tracing is on (``worker.store.tracing``).

One span per batch transaction and one per handled message. A batch holds messages of many
traces, so the batch span has no parent of its own: it *links* to the trace context of each of
its messages. Each message span's parent is the context its message carries (``traceparent`` in
its metadata), so the handler's work, and what it writes, joins the trace of the request that
caused the message; a message without one starts a trace. Retries, parking and replays are
short spans of their own in the message's trace.

A consumer decides once, when it is built, whether it traces (``Spans.of``): with tracing off
the engine's loops run as they would without this module.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from worker.engine.context import handler_name
from worker.engine.outcomes import HandlerFailed
from worker.store.tracing import active

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence

    from worker.engine.routes import Handlers
    from worker.store.message import Message
    from worker.store.tracing import Tracing

_MAX_LINKS = 128  # OpenTelemetry's default limit of links per span


class Spans:
    """The spans of consumer ``consumer`` (see the module doc)."""

    def __init__(self, tracing: Tracing, consumer: str) -> None:
        self.tracing = tracing
        self.consumer = consumer
        self._handlers: dict[int, str] = {}

    @classmethod
    def of(cls, consumer: str) -> Spans | None:
        """The consumer's spans while tracing is on; ``None`` when it is off."""
        tracing = active()
        return None if tracing is None else cls(tracing, consumer)

    @contextlib.contextmanager
    def batch(self, batch: Sequence[Message]) -> Iterator[Any]:
        """A span around one batch transaction, linked to its messages' trace contexts."""
        first, last = batch[0], batch[-1]
        attributes = {
            "worker.consumer": self.consumer,
            "worker.category": first.category,
            "worker.batch.first_global_position": first.global_position,
            "worker.batch.last_global_position": last.global_position,
            "worker.batch.size": len(batch),
        }
        with self.tracing.span(
            f"batch {self.consumer}", attributes, links=self._links(batch)
        ) as span:
            try:
                yield span
            except HandlerFailed as failed:
                span.set_attribute("worker.outcome", "failed")
                span.set_attribute("worker.batch.failed_index", failed.index)
                self.tracing.fail(span, failed.error)
                raise
            except BaseException:
                span.set_attribute("worker.outcome", "error")
                raise
            span.set_attribute("worker.outcome", "committed")

    def _links(self, batch: Sequence[Message]) -> list[Any]:
        links: dict[str, Any] = {}
        for message in batch:
            link = self.tracing.link(message[6])
            if link is not None and len(links) < _MAX_LINKS:
                links.setdefault(format(link.context.span_id, "016x"), link)
        return list(links.values())

    async def handle(
        self,
        route: Handlers,
        message: Message,
        attempt: int,
        run: Callable[[], Awaitable[None]],
        *,
        nested: bool = False,
    ) -> None:
        """``run`` (one message's handlers) in a span whose parent is the message's context
        (``nested``: the current span, itself in the message's trace: a replay's)."""
        with self._message_span("handle", route, message, attempt, nested=nested) as span:
            try:
                await run()
            except HandlerFailed as failed:
                span.set_attribute("worker.outcome", "failed")
                self.tracing.fail(span, failed.error)
                raise
            span.set_attribute("worker.outcome", "handled")

    def parked_behind(self, message: Message) -> None:
        """A span for a message parked behind its stream's parked message."""
        with self._message_span("park", None, message, 0) as span:
            span.set_attribute("worker.outcome", "parked")
            span.set_attribute("worker.parked", True)

    @contextlib.contextmanager
    def noted(
        self,
        verb: str,
        message: Message,
        error: BaseException,
        attempt: int,
        delay: float | None = None,
    ) -> Iterator[Any]:
        """A span saying that ``message`` failed at ``attempt`` and is retried after ``delay``
        (``verb`` "retry"), or was parked after ``attempt`` attempts ("park"); the error
        recorded on it."""
        with self._message_span(verb, None, message, attempt) as span:
            if delay is not None:
                span.set_attribute("worker.retry.delay", delay)
            parked = verb == "park"
            span.set_attribute("worker.outcome", "parked" if parked else "retried")
            span.set_attribute("worker.parked", parked)
            self.tracing.fail(span, error)
            yield span

    @contextlib.contextmanager
    def replay(self, message: Message) -> Iterator[Any]:
        """A span around the replay of a parked message (its handling is a child span)."""
        with self._message_span("replay", None, message, 0) as span:
            yield span

    @contextlib.contextmanager
    def _message_span(
        self,
        verb: str,
        route: Handlers | None,
        message: Message,
        attempt: int,
        *,
        nested: bool = False,
    ) -> Iterator[Any]:
        attributes: dict[str, Any] = {
            "worker.consumer": self.consumer,
            "worker.message.type": message.type,
            "worker.message.id": message.id,
            "worker.stream": message.stream_name,
            "worker.position": message.position,
            "worker.global_position": message.global_position,
            "worker.parked": False,
        }
        if attempt:
            attributes["worker.attempt"] = attempt
        if route is not None:
            attributes["worker.handler"] = self._handler(route)
        parent = None if nested else self.tracing.parent(message[6])
        with self.tracing.span(f"{verb} {message.type}", attributes, parent=parent) as span:
            yield span

    def _handler(self, route: Handlers) -> str:
        name = self._handlers.get(id(route))
        if name is None:
            name = self._handlers[id(route)] = ", ".join(handler_name(c) for c, _ in route.calls)
        return name
