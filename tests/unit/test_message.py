"""Stored messages' fields as rows carry them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.store.message import utc_time


def test_a_message_time_is_read_from_iso_text_as_utc() -> None:
    assert utc_time("2025-01-01 00:05:00.123456") == datetime(2025, 1, 1, 0, 5, 0, 123456, UTC)
    assert utc_time("2025-01-01 00:05:00") == datetime(2025, 1, 1, 0, 5, tzinfo=UTC)
    assert utc_time("2025-01-01 00:05:00").utcoffset() is not None


def test_a_time_in_another_date_style_says_what_to_set() -> None:
    with pytest.raises(ValueError, match="DateStyle must be ISO"):
        utc_time("01/01/2025 00:05:00 UTC")
