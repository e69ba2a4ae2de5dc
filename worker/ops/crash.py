"""What ends ``worker run`` unexpectedly still ends it with a last log line and an exit code.

A SIGTERM or SIGINT before the runner listens for signals (while the application loads, the
database is found, the pool opens) ends it with ``worker stopped``, ``reason="signal during
start-up"`` and exit code 128 + the signal's number (143, 130), rather than killing the process
with no word.

Anything that escapes the runner's task groups (an exception of the engine's own, or a handler
that calls ``sys.exit`` or raises ``KeyboardInterrupt``, which no failure rule catches) is
logged as ``worker stopped`` at level critical, naming the error and where it was raised, with
its traceback as text (not a frame's locals, which may hold a DSN); the process then exits
``EXIT_CRASHED`` (70, ``EX_SOFTWARE``). A ``WorkerError`` alone in a group is raised on its own,
to be the usual one line.
"""

from __future__ import annotations

import signal
import traceback
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import anyio
import structlog

from worker.errors import WorkerError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from types import FrameType

log = structlog.get_logger("worker.cli")

EXIT_CRASHED = 70
_T = TypeVar("_T")


def leaf(error: BaseException) -> BaseException:
    """The one exception inside nested groups of one, else ``error`` itself."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def describe(error: BaseException) -> str:
    """The error's type and text, and the function, file and line it was raised at."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return text
    where = frames[-1]
    return f"{text} (raised in {where.name}, {where.filename}:{where.lineno})"


class Terminated(BaseException):
    """A signal that came before the runner listened for it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextmanager
def guarded() -> Iterator[None]:
    """Around loading and running: a signal before the runner's own handling, or anything
    that escapes, ends the process as the module says; a ``WorkerError`` passes (one line)."""
    previous = {s: signal.signal(s, _terminate) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except BaseException as error:  # the last word on the run, whatever it was
        found = leaf(error)
        if isinstance(found, WorkerError):
            raise found from None
        if isinstance(found, Terminated):
            log.warning("worker stopped", reason="signal during start-up", signal=str(found))
            raise SystemExit(128 + found.signum) from None
        crashed(found)
        raise SystemExit(EXIT_CRASHED) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def guard(work: Callable[[], _T]) -> _T:
    """``work()`` inside ``guarded``."""
    with guarded():
        return work()


def run_guarded(main: Callable[[], Awaitable[_T]]) -> _T:
    """``anyio.run(main)`` inside ``guarded``."""
    with guarded():
        return anyio.run(main)


def crashed(error: BaseException) -> None:
    """Log the run's last line for an error nothing else handled."""
    log.critical(
        "worker stopped",
        reason="unexpected error",
        error=describe(error),
        exit_code=EXIT_CRASHED,
        traceback="".join(traceback.format_exception(error)),
    )
