"""``worker embedded status`` and ``worker embedded stop``: the embedded PostgreSQL's lifecycle.

The embedded server is started by the first command that needs it (``worker db install``,
``worker run``, the demo, the tests) and keeps running for the next; these two show it and stop
it. They act on the configured data folder (``[event_store] embedded_data_dir``) or the one
``--data-dir`` names, whatever server the configuration names otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from worker.ops.cli import common
from worker.store import embedded

app = typer.Typer(help="The embedded PostgreSQL: status and stop.", no_args_is_help=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Its data folder (default: [event_store] embedded_data_dir)."),
]


def _data_dir(data_dir: Path | None) -> Path:
    folder = common.settings().event_store.embedded_data_dir if data_dir is None else data_dir
    return folder.expanduser().resolve()


@app.command("status")
def embedded_status(data_dir: DataDirOption = None) -> None:
    """Whether the embedded PostgreSQL runs: data folder, socket or port, pid. Exit 0 when it
    runs, 1 when it does not."""
    folder = _data_dir(data_dir)
    server = embedded.running(folder)
    if server is None:
        typer.echo(f"embedded PostgreSQL not running (data folder {folder})")
        raise typer.Exit(1)
    typer.echo(f"embedded PostgreSQL {server.describe()}")


@app.command("stop")
def embedded_stop(data_dir: DataDirOption = None) -> None:
    """Stop the embedded PostgreSQL and wait until it has gone (fast shutdown: open sessions
    end, nothing committed is lost). Exit 0 also when it was not running."""
    folder = _data_dir(data_dir)
    server = embedded.stop(folder)
    if server is None:
        typer.echo(f"embedded PostgreSQL was not running (data folder {folder})")
        return
    typer.echo(f"embedded PostgreSQL stopped (data folder {folder}, pid {server.pid})")
