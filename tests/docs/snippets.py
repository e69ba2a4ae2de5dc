"""The code blocks of README.md and docs/: found, classified by their marker, and run.

A block is marked by an HTML comment on the line before its opening fence:

* ``<!-- file: NAME -->``: a file of the first application (README), written out and run as a
  project by ``test_first_application.py``;
* ``<!-- not-run: REASON -->``: not run, for the reason given (counted by the tests);
* none: a Python block runs with the others of its page, in order, in one module namespace
  (like a doctest file) where ``dsn`` names a fresh database with MessageDB installed; every
  ``test_*`` function the page defines without parameters is then called.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*(file|not-run):\s*(.+?)\s*-->$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its code and its marker."""

    page: Path
    line: int
    language: str
    code: str
    marker: str | None = None
    argument: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """README.md and every page of docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, with the marker on the line before each."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    start: int | None = None
    for number, line in enumerate(lines):
        fence = FENCE.match(line)
        if fence is None:
            continue
        if start is None:
            start, language = number, fence.group(1)
            continue
        marker = MARKER.match(lines[start - 1].strip()) if start else None
        code = "\n".join(lines[start + 1 : number]) + "\n"
        kind, argument = (marker.group(1), marker.group(2)) if marker else (None, "")
        found.append(Block(page, start + 1, language, code, kind, argument))
        start = None
    return found


def python_blocks(page: Path) -> list[Block]:
    return [block for block in blocks(page) if block.language == "python"]


async def run_page(page: Path, namespace: dict[str, Any], opened: list[Any]) -> int:
    """Run the unmarked Python blocks of ``page`` in order in one module; then its tests.

    Every value the namespace held after a block is added to ``opened`` (so that pools a later
    block rebinds can still be closed). Returns how many blocks ran."""
    module = types.ModuleType(f"docs_snippets_{page.stem.replace('-', '_')}")
    module.__dict__.update(namespace)
    sys.modules[module.__name__] = module
    try:
        ran = 0
        for block in python_blocks(page):
            if block.marker is None:
                try:
                    await run_block(block, module.__dict__)
                finally:
                    opened.extend(module.__dict__.values())
                ran += 1
        await run_tests(module.__dict__)
        return ran
    finally:
        del sys.modules[module.__name__]


async def run_block(block: Block, namespace: dict[str, Any]) -> None:
    """Execute one block; top-level ``await`` is allowed, as in an async REPL."""
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    code = compile(block.code, block.where, "exec", flags=flags, dont_inherit=True)
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        await result


async def run_tests(namespace: dict[str, Any]) -> None:
    for name, value in list(namespace.items()):
        if name.startswith("test_") and inspect.isfunction(value):
            if inspect.signature(value).parameters:
                continue
            result = value()
            if inspect.iscoroutine(result):
                await result
