"""``python -m worker`` runs the command line."""

from worker.ops.cli import main

main()
