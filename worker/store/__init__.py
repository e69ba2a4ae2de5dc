"""The store layer: MessageDB and PostgreSQL, and nothing else.

Messages and stream names, Eventide's metadata keys, the ``MessageStore`` client, connections
(DSN, pools, the embedded server) and where transactions come from (``transactions``),
MessageDB's package and install, the worker schema's migrations, and MessageDB's named queries
(``queries``).

May import: ``worker.errors`` only. Knows nothing of aggregates, read models or consumers.
"""
