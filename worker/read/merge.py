"""The merge rules of a batch's read-model changes: pure functions of a key's pending state.

Within a batch, the changes to one key fold into one pending state (``Pending``): a whole row
(after ``put``, or once loaded), a patch of sets and increments (``update``/``add`` of a row not
read), known absent, or deleted. ``step`` is the transition for one change; it performs no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker.read.model import Increment

UPDATE = "update"  # of a row that must exist
IF_PRESENT = "update_if_present"  # of a row, if it exists


class MissingRow(Exception):
    """``step`` was asked to ``UPDATE`` a row known not to exist (the table names it)."""


if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.read.model import ReadModel


@dataclass(slots=True)
class Pending:
    """A key's pending state in a batch: a whole row, a patch, known absent, or deleted."""

    row: ReadModel | None = None  # whole row known (put, or loaded)
    original: dict[str, Any] | None = None  # the row as loaded, to skip unchanged writes
    sets: dict[str, Any] = field(default_factory=dict)
    increments: dict[str, Any] = field(default_factory=dict)
    upsert: bool = False  # the patch creates the row when missing (``add``)
    strict: bool = False  # the patch needs the row to exist (``update``)
    absent: bool = False  # known not to exist
    deleted: bool = False  # to be deleted (implies absent)
    position: int = 0  # newest message that changed this key in the batch
    stored: int | None = None  # the row's stored position, once loaded (exact mode)
    ops: list[tuple[int, str, Any]] | None = None  # unresolved changes (exact mode)

    @property
    def is_patch(self) -> bool:
        return self.row is None and not self.absent and not self.deleted


def step(
    state: Pending, kind: str, payload: Any, position: int, new: Callable[[Any], ReadModel]
) -> Pending:
    """The key's state after one change (``new(changes)`` makes a row from the defaults);
    ``MissingRow`` for an ``UPDATE`` of a row known not to exist.

    The key's position is the newest message that changed it: handlers of a concurrent batch
    (``concurrency=n``) may change one key out of global order.
    """
    position = max(position, state.position)
    if kind == "put":
        return Pending(row=payload, position=position, stored=state.stored, original=state.original)
    if kind == "delete":
        return Pending(absent=True, deleted=True, position=position, stored=state.stored)
    upsert = kind == "add"
    if state.row is not None:
        apply(state.row, payload)
        state.position = position
        return state
    if not state.is_patch:
        if not upsert:
            if kind == UPDATE:
                raise MissingRow
            return state
        return Pending(row=new(payload), position=position, stored=state.stored)
    state.upsert = state.upsert or upsert
    state.strict = state.strict or kind == UPDATE
    state.position = position
    merge(state, payload)
    return state


def apply(row: ReadModel, changes: dict[str, Any]) -> None:
    # Straight into the model's __dict__: assignment is not validated (validate_assignment is
    # off) and this skips pydantic's __setattr__ bookkeeping on the hot path.
    values = row.__dict__
    for name, value in changes.items():
        values[name] = values[name] + value.by if type(value) is Increment else value


def merge(state: Pending, changes: dict[str, Any]) -> None:
    """Fold changes into a patch: a set after an increment wins; an increment after a set adds."""
    sets, increments = state.sets, state.increments
    for name, value in changes.items():
        if type(value) is not Increment:
            sets[name] = value
            if name in increments:
                del increments[name]
        elif name in sets:
            sets[name] = sets[name] + value.by
        else:
            increments[name] = increments.get(name, 0) + value.by


def patch_changes(state: Pending) -> dict[str, Any]:
    return {**state.sets, **{k: Increment(v) for k, v in state.increments.items()}}
