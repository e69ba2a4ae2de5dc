"""Read models: ``ReadModel`` rows and their tables' DDL (``model``), the pure merge rules of a
batch's changes (``merge``), the ``Table`` unit of work (``table``), and table generations
behind views for blue/green rebuilds (``generations``), with their named SQL (``queries``).

May import: ``worker.store`` and ``worker.errors``. Never the engine (which consumers fill a
generation, and their positions, are the engine's) nor operations.
"""
