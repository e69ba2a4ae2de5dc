"""Consumer names: written and read back by the one grammar."""

from __future__ import annotations

import pytest

from worker.engine.names import ConsumerName


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("order_summary:order", ConsumerName("order_summary", "order")),
        ("balances:counter@1/4", ConsumerName("balances", "counter", 1, 4)),
        ("book_catalog:book:fact#g3", ConsumerName("book_catalog", "book:fact", generation=3)),
        ("ledger:acct@0/2#g12", ConsumerName("ledger", "acct", 0, 2, 12)),
    ],
)
def test_a_name_reads_back_as_written(text: str, name: ConsumerName) -> None:
    """Parsing a name gives its parts, and the parts write the same name."""
    assert ConsumerName.parse(text) == name
    assert str(name) == text


def test_text_that_is_no_consumer_name_parses_to_none() -> None:
    """A name without a category, or with a malformed group, is not a consumer name."""
    for text in ("order_summary", "a:b@x/2", "a:b@1", "a:b#g"):
        assert ConsumerName.parse(text) is None, text


def test_a_builder_and_a_group_member_share_the_base() -> None:
    """A rebuild's consumer and the group prefix keep the base the seed query looks for."""
    member = ConsumerName("ledger", "acct", 1, 2)
    assert member.building(5).is_building and not member.is_building
    assert member.base == "ledger:acct"
    assert str(member).startswith(member.group_prefix)
