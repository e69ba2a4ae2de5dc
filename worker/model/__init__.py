"""The write side: entities, events, event-sourced aggregates and their repository, snapshots,
state aggregates with fact events, and the named queries of their state rows (``queries``).

May import: ``worker.store`` and ``worker.errors``. Never the read side, the engine, the
``Domain`` (repositories take a decoder and a threshold; aggregates see an ``EventRegistry``)
or operations.
"""
