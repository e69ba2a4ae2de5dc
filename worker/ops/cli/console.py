"""``worker console``: the operators' web console (needs the ``console`` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from worker.ops.cli import common

app = typer.Typer()


@app.command("console")
def console(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default [console] host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default [console] port, 8800).")
    ] = None,
    allow_actions: Annotated[
        bool,
        typer.Option(
            "--allow-actions",
            help="Offer pause, resume, replay, discard, reset and rebuild to operators who "
            "sign in with WORKER_CONSOLE__TOKEN.",
        ),
    ] = False,
) -> None:
    """Serve the web console: consumers live, parked messages, projections.

    Read-only unless --allow-actions. Listening on an address other than the loopback one
    needs a token (WORKER_CONSOLE__TOKEN), and so do actions.
    """
    from worker.ops.console.serving import serve

    application = common.load_app(read_only=True)
    section = application.settings.console
    serve(
        application,
        section.host if host is None else host,
        section.port if port is None else port,
        allow_actions=allow_actions,
    )
