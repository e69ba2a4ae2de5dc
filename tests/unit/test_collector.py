"""The worker process's garbage collector settings (``[worker] gc_threshold``)."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import pytest

from worker.ops import collector

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    """Each test leaves the process's collector as it found it."""
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    collector._frozen = False
    yield
    gc.set_threshold(*threshold)
    collector._frozen = frozen > 0
    if not frozen:
        gc.unfreeze()


def test_tune_freezes_what_exists_and_sets_only_the_young_threshold() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 11, 12)
    before = {"made": ["at start-up"]}
    collector.tune(10_000)
    after = {"made": ["later"]}
    assert gc.get_threshold() == (10_000, 11, 12)
    assert gc.get_freeze_count() > 0
    watched = gc.get_objects()
    assert not any(o is before for o in watched)  # out of the collector's sight
    assert any(o is after for o in watched)
    collector.tune(20_000)  # a second run in the process: what came since stays in sight
    assert gc.get_threshold() == (20_000, 11, 12)
    assert any(o is after for o in gc.get_objects())


def test_zero_leaves_the_collector_as_it_is() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    collector.tune(0)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
