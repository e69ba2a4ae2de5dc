"""The testing kit: in-memory stand-ins of the worker's storage, and a harness that runs
projectors and event handlers on them with the engine's own code.

Stand-ins (each held to its PostgreSQL twin by a contract suite in ``tests/contracts``):

* ``MemoryMessageStore``: MessageDB (``MessageStore``'s methods and rules), returning
  ``MemoryMessage`` rows; ``hash_64`` and ``group_member`` are MessageDB's consumer-group
  hashing.
* ``MemoryPositionStore``: consumers' positions and lease epochs (``PositionStore``); asserts
  with ``committed(consumer, position)`` and ``position_of(consumer)``.
* ``MemoryParkedMessages``: parked messages (``ParkedMessages``); asserts with
  ``has(stream_name)`` and ``parked(consumer)``.
* ``MemoryTable`` / ``MemoryReadModels``: read-model tables (``Table``'s own merge rules over
  rows in memory); ``rows(Model)`` reads them.
* ``MemoryTransactions`` / ``MemoryConnection``: in-memory transactions whose rollback undoes
  every change made in them; they refuse SQL (``InMemorySQLError``).
* ``MemoryBackend``: all of them as the engine's ``Backend``, so the real ``Consumer`` (with its
  replays of parked messages) runs without a database; ``project`` runs on it.

Harness: ``project(Subscriber, in_stream(stream, *events), ...)`` returns a ``Projected`` with
the rows, the emitted messages, the parked messages and the positions.

Process managers: ``given_process(Fulfillment, in_stream(...))`` runs one over events on a
``FakeClock``; the ``ProcessRun`` shows instances, commands and deadlines (``MemoryDeadlines``),
and ``advance(seconds)`` delivers the deadlines that fall due.

Aggregates: ``given(*events).when(command).then(...)`` checks an aggregate's behaviour in memory
(``aggregates``). The pytest plugin (``plugin``, installed with the package) gives tests a real
PostgreSQL with MessageDB, a fresh database per test, and ``run_until_caught_up``.

May import: ``worker.store``, ``model``, ``read``, ``engine``, ``domain`` and ``errors``;
never operations.
"""

from worker.engine.dead_letters import ParkedMessage
from worker.errors import InMemorySQLError
from worker.testing.aggregates import Given, Then, given, replay
from worker.testing.backend import MemoryBackend
from worker.testing.connection import MemoryConnection, MemoryTransactions
from worker.testing.deadlines import FakeClock, MemoryDeadlines
from worker.testing.harness import Projected, StreamEvent, in_stream, project
from worker.testing.message_store import (
    MemoryMessage,
    MemoryMessageStore,
    group_member,
    hash_64,
)
from worker.testing.parked import MemoryParked, MemoryParkedMessages
from worker.testing.positions import MemoryPositionStore
from worker.testing.process import ProcessRun, given_process
from worker.testing.table import MemoryReadModels, MemoryRows, MemoryTable

__all__ = [
    "FakeClock",
    "Given",
    "InMemorySQLError",
    "MemoryBackend",
    "MemoryConnection",
    "MemoryDeadlines",
    "MemoryMessage",
    "MemoryMessageStore",
    "MemoryParked",
    "MemoryParkedMessages",
    "MemoryPositionStore",
    "MemoryReadModels",
    "MemoryRows",
    "MemoryTable",
    "MemoryTransactions",
    "ParkedMessage",
    "ProcessRun",
    "Projected",
    "StreamEvent",
    "Then",
    "given",
    "given_process",
    "group_member",
    "hash_64",
    "in_stream",
    "project",
    "replay",
]
