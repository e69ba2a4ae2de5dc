"""The ``worker`` command line: one Typer application, each command group in a module."""

from worker.ops.cli.main import main

__all__ = ["main"]
