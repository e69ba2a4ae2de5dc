"""``Increment``: a value (equal, hashable, shown by its amount) that cannot be changed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from worker import Increment


def test_increments_are_values() -> None:
    assert Increment(2) == Increment(2)
    assert Increment(2) != Increment(3)
    assert Increment() == Increment(1)
    assert Increment(Decimal("1.50")) == Increment(Decimal("1.5"))
    assert len({Increment(2), Increment(2), Increment(5)}) == 2
    assert Increment(2) != 2  # an amount is not an increment of it
    assert repr(Increment(Decimal("0.25"))) == "Increment(by=Decimal('0.25'))"


def test_an_increment_cannot_be_changed() -> None:
    step = Increment(2)
    with pytest.raises(AttributeError):
        step.by = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        step.other = 1  # type: ignore[attr-defined]
    assert step.by == 2
