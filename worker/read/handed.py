"""Awaitables handed to a handler, kept until awaited, so one left un-awaited is seen.

While the engine runs a handler, ``handed_to`` holds the handler's record of what it was handed
(its ``Context.unawaited``). ``handed(label, fn, *args)`` returns the coroutine ``fn(*args)``
would, recorded there until it starts; the engine fails a handler that returns with one still
recorded (it never ran: a write lost, a read ignored) and closes them, so none warns.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

T = TypeVar("T")
Unawaited: TypeAlias = "dict[object, tuple[str, Coroutine[Any, Any, Any]]]"

handed_to: ContextVar[Unawaited | None] = ContextVar("worker_handed_to", default=None)


def handed(
    label: str, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any
) -> Coroutine[Any, Any, T]:
    """``fn(*args)``, recorded as ``label`` in the running handler's record until awaited."""
    unawaited = handed_to.get()
    if unawaited is None:  # not called by a handler the engine runs
        return fn(*args)
    return record(unawaited, label, fn, *args)


def record(
    unawaited: Unawaited, label: str, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any
) -> Coroutine[Any, Any, T]:
    """``fn(*args)`` as a coroutine recorded in ``unawaited`` until it starts."""
    token = object()
    coroutine = _started(unawaited, token, fn, args)
    unawaited[token] = (label, coroutine)
    return coroutine


async def _started(
    unawaited: Unawaited, token: object, fn: Callable[..., Coroutine[Any, Any, T]], args: Any
) -> T:
    unawaited.pop(token, None)
    return await fn(*args)
