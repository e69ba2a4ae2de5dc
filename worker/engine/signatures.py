"""Checking, when a projector or handler class is registered, that the engine can call it.

The engine makes one instance with ``cls()``, calls each ``@on``/``@handle`` method as
``method(event, ctx)`` and a projector's ``setup(conn)``. A method that cannot take those
arguments would fail every message it is given; it is refused at registration instead, in one
line naming the class, the method and what is wrong.
"""

from __future__ import annotations

import inspect
from typing import Any

from worker.errors import RegistrationError

_EMPTY = inspect.Parameter.empty
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def check_callable(who: str, cls: type[Any], attr: str, *args: str) -> None:
    """Refuse ``cls.attr`` unless an instance's ``attr`` can be called with ``args`` (by name,
    e.g. ``"event", "ctx"``), positionally and nothing else."""
    raw = inspect.getattr_static(cls, attr)
    func, first = _function(raw)
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # not introspectable: left to the call
        return
    wanted = [first, *args] if first else list(args)
    problem = _problem(params, wanted, first)
    if problem is not None:
        shown = ", ".join(wanted)
        raise RegistrationError(
            f"{who}: {cls.__name__}.{attr} {problem}; the engine calls it with ({shown})"
        )


def check_constructible(who: str, cls: type[Any]) -> None:
    """Refuse a class the engine cannot instantiate with ``cls()``."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    required = [
        p.name
        for p in signature.parameters.values()
        if p.default is _EMPTY and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise RegistrationError(
            f"{who}: {cls.__name__}() needs {', '.join(required)}, but the engine makes its "
            "instance with no arguments: give them defaults"
        )


def _function(raw: Any) -> tuple[Any, str]:
    """The function behind a class attribute, and the name of what is bound first."""
    if isinstance(raw, staticmethod):
        return raw.__func__, ""
    if isinstance(raw, classmethod):
        return raw.__func__, "cls"
    return raw, "self"


def _problem(params: list[inspect.Parameter], wanted: list[str], first: str) -> str | None:
    """What keeps a function with ``params`` from being called with ``wanted``; None: nothing."""
    positional = [p for p in params if p.kind in _POSITIONAL]
    names = [p.name for p in positional]
    keyword_only = [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.default is _EMPTY]
    if keyword_only:
        return f"has required keyword-only parameter(s) {', '.join(keyword_only)}"
    if len(positional) < len(wanted) and not any(p.kind == p.VAR_POSITIONAL for p in params):
        missing = _missing(names, wanted, first)
        return f"takes ({', '.join(names)}): missing {missing}"
    required = [p.name for p in positional if p.default is _EMPTY]
    if len(required) > len(wanted):
        extra = ", ".join(required[len(wanted) :])
        return f"takes ({', '.join(names)}): too many required parameters ({extra})"
    return None


def _missing(names: list[str], wanted: list[str], first: str) -> str:
    """Which of ``wanted`` a function taking ``names`` lacks, as a user would fix it."""
    if first and (not names or names[0] != first) and len(names) == len(wanted) - 1:
        return f"{first} (make it a @staticmethod if it takes none)" if first == "self" else first
    return ", ".join(wanted[len(names) :])
