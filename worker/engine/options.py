"""``SubscriberOptions``: how a projector or an event handler runs, said once.

``@domain.projector(...)`` and ``@domain.event_handler(...)`` take these fields as keywords, and
``build_subscriber`` checks them; the engine reads them from ``Subscriber.options``. A new
option is a field here (with its line of documentation, and its check when it needs one) and
the place in the engine that uses it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from functools import wraps
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar

from worker.errors import RegistrationError, UnknownOptionError
from worker.read.model import ReadModel

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from worker.engine.partitions import PartitionKey
    from worker.engine.retry import FailureAction

StartFrom = Literal["origin", "head"]
P = ParamSpec("P")
R = TypeVar("R")

# Options only a projector takes (an event handler owns no read models).
PROJECTOR_ONLY = ("read_models", "version")


@dataclass(frozen=True, kw_only=True)
class SubscriberOptions:
    """How a projector or an event handler runs; every field has a default."""

    name: str | None = None
    """Its name (default: the class name); its consumers are named ``{name}:{category}``."""
    stream_categories: Sequence[str] | None = None
    """Categories it reads; default: those of the events it handles (must agree with them)."""
    aggregates: Sequence[type[Any]] | None = None
    """Aggregates whose categories it reads (as ``stream_categories``)."""
    max_attempts: int | None = None
    """Attempts at a failing message before ``on_failure`` (default ``[worker] max_attempts``)."""
    on_failure: FailureAction | None = None
    """``"park"`` the message or ``"stop"`` the consumer (default ``[worker] on_failure``)."""
    batch_size: int | None = None
    """Messages read and handled in one transaction (default ``[worker] batch_size``)."""
    read_models: Sequence[type[ReadModel]] = ()
    """Projectors: the ``ReadModel`` tables it owns (created by the worker, ``ctx.table``)."""
    version: str | int | None = None
    """Projectors: its code's version; a change of it can trigger a rebuild."""
    group_size: int = 1
    """MessageDB consumer-group members each category is split into, each leased on its own."""
    start_from: StartFrom = "origin"
    """Where a consumer with no position yet starts: its category's first message, or head."""
    concurrency: int = 1
    """Partitions of a batch handled at once, each in order (for handlers waiting on I/O)."""
    partition_by: PartitionKey | None = None
    """A message's partition with ``concurrency > 1`` (default: its stream name)."""
    stream_category: str | None = None
    """Process managers: the category of their instances' streams (default: from the class
    name, by the domain's conventions)."""

    def check(self, who: str, *, projector: bool, process: bool = False) -> None:
        """Refuse options that cannot work, with one line naming ``who`` they are of."""
        given = [f.name for f in fields(self) if f.name in PROJECTOR_ONLY]
        if not projector and any(getattr(self, name) not in (None, ()) for name in given):
            raise RegistrationError(f"{who}: read_models and version are a projector's options")
        if not process and self.stream_category is not None:
            raise RegistrationError(f"{who}: stream_category is a process manager's option")
        if not isinstance(self.group_size, int) or not 1 <= self.group_size <= 1024:
            raise RegistrationError(
                f"group_size must be an integer in 1..1024, got {self.group_size!r}"
            )
        if self.on_failure not in (None, "park", "stop"):
            raise RegistrationError(f"on_failure must be 'park' or 'stop', got {self.on_failure!r}")
        if self.start_from not in ("origin", "head"):
            raise RegistrationError(
                f"start_from must be 'origin' or 'head', got {self.start_from!r}"
            )
        self._check_concurrency(who)
        for model in self.read_models:
            if not (isinstance(model, type) and issubclass(model, ReadModel)):
                raise RegistrationError(f"read_models takes ReadModel classes, got {model!r}")
            model.check()

    def _check_concurrency(self, who: str) -> None:
        concurrency, partition_by = self.concurrency, self.partition_by
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise RegistrationError(
                f"{who}: concurrency must be an integer >= 1, got {concurrency!r}"
            )
        if partition_by is not None and not callable(partition_by):
            raise RegistrationError(
                f"{who}: partition_by must be a function of the message, got {partition_by!r}"
            )
        if partition_by is not None and concurrency == 1:
            raise RegistrationError(
                f"{who}: partition_by needs concurrency > 1 (with 1, every message is handled "
                "in the order of the category)"
            )


def taking_options(
    make: Callable[P, SubscriberOptions],
) -> Callable[[Callable[[Any, SubscriberOptions], R]], Callable[Concatenate[Any, P], R]]:
    """Give a method ``(self, options)`` the keywords of ``SubscriberOptions`` (typed as its
    fields), so a decorator that registers a subscriber spells no option out again."""

    def decorate(method: Callable[[Any, SubscriberOptions], R]) -> Callable[Concatenate[Any, P], R]:
        @wraps(method)
        def with_keywords(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
            unknown = [key for key in kwargs if key not in _NAMES]
            if unknown or args:
                raise UnknownOptionError(_unknown(method.__name__, unknown, len(args)))
            return method(self, make(*args, **kwargs))

        return with_keywords

    return decorate


_NAMES = frozenset(f.name for f in fields(SubscriberOptions))


def _unknown(decorator: str, names: list[str], positional: int) -> str:
    """One line for options a decorator does not take (with the one most likely meant)."""
    if not names:
        return f"@domain.{decorator} takes its options as keywords ({positional} given by position)"
    problems = []
    for name in names:
        close = difflib.get_close_matches(name, sorted(_NAMES), n=1)
        problems.append(name + (f" (did you mean {close[0]}?)" if close else ""))
    return f"@domain.{decorator}: unknown option {', '.join(problems)}"
