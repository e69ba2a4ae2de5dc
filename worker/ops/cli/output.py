"""Tables for the command line: never a cut name, on a terminal or in a pipe or a log."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Column, Table

if TYPE_CHECKING:
    from collections.abc import Iterable

# Off a terminal rich assumes 80 columns and shortens cells to fit ("book_cat…"); a pipe or a
# log has no width, so tables take the width they need there.
_UNBOUNDED = 100_000


def table(*headers: str, names: Iterable[str] = ()) -> Table:
    """A table whose ``names`` columns wrap on a narrow terminal rather than being cut."""
    fold = set(names)
    return Table(*(Column(h, overflow="fold") if h in fold else Column(h) for h in headers))


def console() -> Console:
    """The terminal's width on a terminal, no limit elsewhere; cells printed as they are (no
    markup, no emoji codes: rich would print ``book_catalog:book:fact`` with a book emoji)."""
    width = None if sys.stdout.isatty() else _UNBOUNDED
    return Console(width=width, markup=False, emoji=False, highlight=False)


def printed_plainly(rows: list[dict[str, Any]], *, as_json: bool, none: str) -> bool:
    """Print ``rows`` as JSON (``as_json``), or ``none`` when there are none; whether done
    (else the caller prints its table)."""
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return True
    if not rows:
        typer.echo(none)
        return True
    return False
