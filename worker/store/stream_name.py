"""MessageDB stream and category names: building, splitting and validating them.

A stream is ``{category}-{id}``; the category is the text before the first ``-`` and the
cardinal id is the id's part before the first ``+`` (MessageDB's own rules). A category may carry
a type suffix after ``:``, e.g. ``order:snapshot`` or ``order:fact``.
"""

from __future__ import annotations

import re

from worker.errors import InvalidStreamNameError

MAX_LENGTH = 500
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")


def category(stream_name: str) -> str:
    """The category of a stream name (the whole name when it has no ``-``)."""
    return stream_name.split("-", 1)[0]


def stream_id(stream_name: str) -> str | None:
    """The id part of a stream name, or ``None`` for a bare category."""
    parts = stream_name.split("-", 1)
    return parts[1] if len(parts) == 2 else None


def cardinal_id(stream_name: str) -> str | None:
    """The id part before the first ``+``, which consumer groups partition by."""
    ident = stream_id(stream_name)
    return None if ident is None else ident.split("+", 1)[0]


def is_category(name: str) -> bool:
    """True for a bare category name (no ``-``), as MessageDB's ``is_category``."""
    return "-" not in name


def stream(category_name: str, ident: object) -> str:
    """Build ``{category}-{id}``, validating both parts."""
    check_category(category_name)
    name = f"{category_name}-{ident}"
    check_stream_name(name)
    return name


def _check_text(kind: str, name: object) -> str:
    if not isinstance(name, str):
        raise InvalidStreamNameError(f"{kind} must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidStreamNameError(f"{kind} must not be empty")
    if len(name) > MAX_LENGTH:
        raise InvalidStreamNameError(f"{kind} is {len(name)} characters long; at most {MAX_LENGTH}")
    if _FORBIDDEN.search(name):
        raise InvalidStreamNameError(f"{kind} {name!r} contains whitespace or control characters")
    return name


def check_stream_name(name: object) -> str:
    """Return ``name`` if it is a valid stream name ``{category}-{id}``, else raise."""
    text = _check_text("stream name", name)
    head, sep, tail = text.partition("-")
    if not sep:
        raise InvalidStreamNameError(
            f"stream name {text!r} has no id: expected '{{category}}-{{id}}' (this is a category)"
        )
    if not head:
        raise InvalidStreamNameError(f"stream name {text!r} has an empty category before '-'")
    if not tail:
        raise InvalidStreamNameError(f"stream name {text!r} has an empty id after '-'")
    return text


def check_category(name: object) -> str:
    """Return ``name`` if it is a valid category (no ``-``), else raise."""
    text = _check_text("category", name)
    if "-" in text:
        raise InvalidStreamNameError(
            f"category {text!r} contains '-': that is a stream name; its category is "
            f"{category(text)!r}"
        )
    return text
