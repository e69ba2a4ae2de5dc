"""The read models a subscriber declares: the only ones its handlers' ``ctx.table`` gives.

A read model missing from ``read_models=`` has no table that the worker creates, migrates or
rebuilds; on PostgreSQL its writes would fail (or land in another projector's table), in memory
they would pass. ``ctx.table`` refuses it alike everywhere, at first use in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.errors import UndeclaredReadModelError

if TYPE_CHECKING:
    from worker.read.model import ReadModel


@dataclass(frozen=True, slots=True)
class Declared:
    """A subscriber (``who``: e.g. ``projector 'order_summary'``) and its read models."""

    who: str
    models: frozenset[type[ReadModel]]
    projector: bool = True

    def check(self, model: type[ReadModel]) -> None:
        """Refuse ``model`` unless it is declared."""
        if model in self.models:
            return
        name = model.__name__
        fix = (
            f"add {name} to its read_models=[...]"
            if self.projector
            else f"an event handler has no read models: make it a projector with "
            f"read_models=[{name}]"
        )
        raise UndeclaredReadModelError(
            f"{self.who} uses ctx.table({name}), a read model it does not declare: {fix}"
        )
