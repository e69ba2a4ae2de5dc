"""MkDocs hook: the CLI reference, rendered from the ``worker`` Typer application at build time.

``docs/commands.md`` holds the marker ``<!-- cli-reference -->``; this hook replaces it with one
section per command (its usage, help and options), read from ``worker.ops.cli.main.app``, so the
reference is never a copy that can drift from the code.
"""

from __future__ import annotations

import re
from typing import Any

import typer.main

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Put the generated reference where the page has the marker."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())


def render() -> str:
    """Every command of the ``worker`` application as Markdown, groups' commands included."""
    from worker.ops.cli.main import app

    root = typer.main.get_command(app)
    ctx = root.make_context("worker", [], resilient_parsing=True)
    return "\n".join(_commands(root, ctx))


def commands() -> list[str]:
    """The full name of every command (``worker db install``), for tests."""
    return [line.removeprefix("### `").removesuffix("`") for line in _headings()]


def _headings() -> list[str]:
    return [line for line in render().splitlines() if line.startswith("### `")]


def _commands(command: Any, ctx: Any) -> list[str]:
    children = getattr(command, "commands", None)
    if children is None:
        return _section(command, ctx)
    lines = _section(command, ctx)
    for name in command.list_commands(ctx):
        child = command.get_command(ctx, name)
        if child is None or child.hidden:
            continue
        lines += _commands(child, child.make_context(name, [], parent=ctx, resilient_parsing=True))
    return lines


def _section(command: Any, ctx: Any) -> list[str]:
    lines = [f"### `{ctx.command_path}`", ""]
    pieces = " ".join(command.collect_usage_pieces(ctx))
    usage = re.sub(r"\{(\w+)\}", lambda m: m[1].upper(), pieces)
    lines += ["```text", f"{ctx.command_path} {usage}", "```"]
    lines += ["", (command.help or "").strip(), ""]
    options = [p for p in command.params if not getattr(p, "hidden", False)]
    if options:
        lines += ["| parameter | meaning | default |", "|---|---|---|"]
        lines += [_row(p) for p in options]
        lines.append("")
    return lines


def _row(param: Any) -> str:
    names = ", ".join(f"`{name}`" for name in [*param.opts, *param.secondary_opts])
    if param.param_type_name == "argument":
        names = f"`{param.name.upper()}`"
    default = param.default
    shown = "" if default in (None, False, ()) or callable(default) else f"`{default}`"
    if param.required:
        shown = "required"
    text = (getattr(param, "help", None) or "").replace("|", "\\|").replace("\n", " ")
    return f"| {names} | {text} | {shown} |"
