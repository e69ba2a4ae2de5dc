"""A testing kit for applications built on ``worker``.

* ``given(...).when(...).then(...)``: an aggregate's behaviour, in memory (``aggregates``);
* the pytest plugin (``plugin``, installed with the package): fixtures for tests against a real
  PostgreSQL with MessageDB, a fresh database per test, and ``run_until_caught_up``.

May import: every layer but ``worker.ops``.
"""

from worker.testing.aggregates import Given, Then, given, replay

__all__ = ["Given", "Then", "given", "replay"]
