"""The shape of the documentation: a short README that starts with the two commands, every page
of docs/ in the site's navigation, and a CLI reference that covers every command."""

from __future__ import annotations

import importlib.util
import re
from typing import TYPE_CHECKING

import yaml

from tests.docs.snippets import ROOT

if TYPE_CHECKING:
    from types import ModuleType

README = ROOT / "README.md"


def cli_hook() -> ModuleType:
    """The MkDocs hook that renders the CLI reference (docs/hooks/cli.py)."""
    spec = importlib.util.spec_from_file_location("docs_cli_hook", ROOT / "docs/hooks/cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    """At most 300 lines; its first code block is `make demo` and `make test`."""
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    first = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first is not None
    assert [line.split()[:2] for line in first.group(1).splitlines()] == [
        ["make", "demo"],
        ["make", "test"],
    ]


def test_every_page_is_in_the_navigation() -> None:
    """A page left out of mkdocs.yml's nav would be built but never reachable from the menu."""
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    listed = {next(iter(entry.values())) for entry in config["nav"]}
    assert listed == {page.name for page in (ROOT / "docs").glob("*.md")}


def test_the_cli_reference_is_generated_into_the_commands_page() -> None:
    """The commands page holds the marker the hook replaces with every command's options."""
    hook = cli_hook()
    page = (ROOT / "docs/commands.md").read_text()
    rendered = hook.on_page_markdown(page)
    assert hook.MARKER in page and hook.MARKER not in rendered
    assert "### `worker dlq replay`" in rendered and "`--until-caught-up`" in rendered


def test_every_command_is_described_in_the_commands_table() -> None:
    """Each command of the command line has a row in the hand-written table that says what it
    does (a new command without one fails here)."""
    page = (ROOT / "docs/commands.md").read_text().splitlines()
    rows = [line for line in page if line.startswith("| `worker")]
    names = [name.split() for name in cli_hook().commands()]
    leaves = [name for name in names if not any(other[:-1] == name for other in names)]
    assert [" ".join(name) for name in leaves if not described(name, rows)] == []


def described(name: list[str], rows: list[str]) -> bool:
    """A row names the command (``worker dlq`` ... ``replay``, or ``worker resume``)."""
    group, leaf = " ".join(name[:2]), name[-1]
    return any(f"`{group}" in row and re.search(rf"\b{leaf}\b", row) for row in rows)
