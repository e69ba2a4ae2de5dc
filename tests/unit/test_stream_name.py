"""Stream and category names follow MessageDB's rules."""

from __future__ import annotations

import pytest

from worker import InvalidStreamNameError
from worker.store.stream_name import (
    cardinal_id,
    category,
    check_category,
    check_stream_name,
    is_category,
    stream,
    stream_id,
)


@pytest.mark.parametrize(
    ("name", "cat", "ident", "cardinal"),
    [
        ("order-1", "order", "1", "1"),
        ("order-1-2", "order", "1-2", "1-2"),
        ("order:snapshot-abc", "order:snapshot", "abc", "abc"),
        ("account-7+eu", "account", "7+eu", "7"),
        ("order", "order", None, None),
    ],
)
def test_parts_follow_messagedb(
    name: str, cat: str, ident: str | None, cardinal: str | None
) -> None:
    assert category(name) == cat
    assert stream_id(name) == ident
    assert cardinal_id(name) == cardinal
    assert is_category(name) == (ident is None)


def test_stream_builds_and_validates() -> None:
    assert stream("order", 42) == "order-42"
    with pytest.raises(InvalidStreamNameError, match="contains '-'"):
        stream("or-der", 1)
    with pytest.raises(InvalidStreamNameError, match="empty id"):
        stream("order", "")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("order", "has no id"),
        ("-1", "empty category"),
        ("", "must not be empty"),
        ("a b-1", "whitespace"),
        (42, "must be a string"),
    ],
)
def test_bad_stream_names_say_why(name: object, message: str) -> None:
    with pytest.raises(InvalidStreamNameError, match=message):
        check_stream_name(name)


def test_category_rejects_stream_names() -> None:
    assert check_category("order:fact") == "order:fact"
    with pytest.raises(InvalidStreamNameError, match="its category is 'order'"):
        check_category("order-1")
