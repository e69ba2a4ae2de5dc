"""``worker config``: the settings in force, and where each key came from."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from worker.ops.cli import common, output
from worker.ops.settings import effective

app = typer.Typer()


@app.command("config")
def config(
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """The settings in force, each key with its source: environment, file or default.

    Secrets are masked, the database URI shows without its password. Connects to nothing.
    """
    settings = common.settings()
    rows = effective(settings)
    if as_json:
        document = {
            "config_file": None if settings.config_file is None else str(settings.config_file),
            "settings": [asdict(row) for row in rows],
        }
        typer.echo(json.dumps(document, indent=2, default=str))
        return
    typer.echo(f"config file: {settings.config_file or 'none'}")
    table = output.table("key", "value", "source", names=("value", "source"))
    for row in rows:
        value = row.value if isinstance(row.value, str) else json.dumps(row.value, default=str)
        table.add_row(row.key, value, row.source)
    output.console().print(table)
