"""The process's garbage collector, set for a worker that makes many short-lived objects.

A worker makes and drops objects by the hundred thousand (rows, events, pending read-model
changes), nearly all of them freed by reference counting as soon as they go. Left at Python's
defaults, the cyclic collector still looks through the young objects every 700 allocations and,
as survivors of those looks pile up, through every object the process holds, the modules and
the validators' schemas included: about an eighth of a projector's time in ``bench.engine``.
``tune`` puts what start-up made out of the collector's sight (``gc.freeze``, once per process,
after a full collection so that no garbage is frozen with it) and looks through the young
objects every ``threshold`` allocations (``[worker] gc_threshold``; 0 leaves the collector as it
is).
"""

from __future__ import annotations

import gc

_frozen = False  # start-up is frozen once per process


def tune(threshold: int) -> None:
    """Freeze what start-up made (the first time) and set the young generation's threshold;
    0 does nothing."""
    global _frozen  # one process, one start-up
    if threshold <= 0:
        return
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)
