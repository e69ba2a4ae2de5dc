"""Stored messages' fields as rows carry them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from worker.store.message import MessageFields, utc_time


class Row(MessageFields, tuple):  # type: ignore[type-arg]
    """A stored message as a row (MessageDB's column order)."""


def test_a_message_time_is_read_from_iso_text_as_utc() -> None:
    assert utc_time("2025-01-01 00:05:00.123456") == datetime(2025, 1, 1, 0, 5, 0, 123456, UTC)
    assert utc_time("2025-01-01 00:05:00") == datetime(2025, 1, 1, 0, 5, tzinfo=UTC)
    assert utc_time("2025-01-01 00:05:00").utcoffset() is not None


def test_each_message_reads_its_own_time_when_times_repeat_and_alternate() -> None:
    """The last time parsed is kept for the next message of the same write (same text)."""
    texts = ["2025-01-01 00:05:00.5", "2025-01-01 00:05:00.5", "2025-01-02 07:00:00"] * 2
    rows = [Row(("i", "thing-1", "Made", n, n, "{}", None, t)) for n, t in enumerate(texts)]
    assert [row.time for row in rows] == [utc_time(t) for t in texts]
    assert rows[2].time == datetime(2025, 1, 2, 7, tzinfo=UTC)
    assert rows[0].time == datetime(2025, 1, 1, 0, 5, 0, 500000, UTC)


def test_a_time_in_another_date_style_says_what_to_set() -> None:
    with pytest.raises(ValueError, match="DateStyle must be ISO"):
        utc_time("01/01/2025 00:05:00 UTC")


def test_decode_follows_upcasters_registered_after_an_earlier_decode() -> None:
    """``decode`` keeps one decoder per class, made again when the upcasters change."""
    from worker import BaseEvent
    from worker.errors import MalformedMessageError
    from worker.model.event import add_upcaster, decode

    class Renamed(BaseEvent):
        __version__ = 2
        name: str

    stored: Any = Row(("i", "thing-1", "Renamed", 0, 1, '{"title": "a"}', None, "2025-01-01"))
    current: Any = Row(
        ("i", "thing-1", "Renamed", 1, 2, '{"name": "b"}', '{"schemaVersion": 2}', "")
    )
    assert decode(Renamed, current) == Renamed(name="b")
    with pytest.raises(MalformedMessageError, match=r"no upcaster of .*Renamed from version 1"):
        decode(Renamed, stored)
    add_upcaster(Renamed, 1, lambda data: {"name": data["title"]})
    assert decode(Renamed, stored) == Renamed(name="a")
