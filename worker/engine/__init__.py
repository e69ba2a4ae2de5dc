"""The read side at run time: subscribers and their consumers.

Subscribers and routes, consumer names (``names``), the consumer's lifecycle (``consumer``) with
its states (``state``), batch application and failure isolation (``batch``), replays of parked
streams (``replays``), parked messages (``dead_letters``), positions, leases, retries, wake-ups,
the one consumer factory (``factory``), the runner, rebuilds, and the worker schema's named SQL
(``queries``).

May import: ``worker.store``, ``worker.read``, ``worker.model.event`` (event types only) and
``worker.errors``. Never the ``Domain`` (it takes anything with ``subscribers``) nor operations:
probes and systemd are ``services`` given to the ``Runner`` (``services``). Operator actions
(reset, pause, replay, discard, rebuild) are ``operations``.
"""
