"""What ends ``worker run`` unexpectedly still ends it with a last log line and an exit code.

Anything that escapes the runner's task groups (an exception of the engine's own, or a handler
that calls ``sys.exit`` or raises ``KeyboardInterrupt``, which no failure rule catches) is
logged as ``worker stopped`` at level critical, naming the error and where it was raised, with
its traceback as text (not a frame's locals, which may hold a DSN); the process then exits
``EXIT_CRASHED`` (70, ``EX_SOFTWARE``). A ``WorkerError`` alone in a group is raised on its own,
to be the usual one line.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, TypeVar

import anyio
import structlog

from worker.errors import WorkerError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

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


def run_guarded(main: Callable[[], Awaitable[_T]]) -> _T:
    """``anyio.run(main)``; what escapes it ends the process as the module says."""
    try:
        return anyio.run(main)
    except BaseException as error:  # the last word on the run, whatever it was
        found = leaf(error)
        if isinstance(found, WorkerError):
            raise found from None
        crashed(found)
        raise SystemExit(EXIT_CRASHED) from None


def crashed(error: BaseException) -> None:
    """Log the run's last line for an error nothing else handled."""
    log.critical(
        "worker stopped",
        reason="unexpected error",
        error=describe(error),
        exit_code=EXIT_CRASHED,
        traceback="".join(traceback.format_exception(error)),
    )
