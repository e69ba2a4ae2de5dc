"""The typed errors the library raises; every one says what went wrong and where."""

from __future__ import annotations


class WorkerError(Exception):
    """Base of every error raised on purpose by this package; ``exit_code`` is the CLI's."""

    exit_code: int = 1


class ConfigurationError(WorkerError):
    """The configuration (domain.toml or WORKER_* variables) is invalid."""


class UsageError(WorkerError):
    """A command was given arguments that cannot work (an unknown name): exit code 2."""

    exit_code = 2


class DatabaseUnavailableError(WorkerError):
    """The configured PostgreSQL server cannot be reached or refuses the connection."""


class DatabaseMissingError(DatabaseUnavailableError):
    """The server answers, but the database the DSN names does not exist."""


class PrivilegeError(WorkerError):
    """The database role lacks a right the worker needs (named in the message)."""


class InstallError(WorkerError):
    """MessageDB or the worker schema cannot be installed or verified."""


class InvalidStreamNameError(WorkerError, ValueError):
    """A stream or category name does not follow MessageDB's naming rules."""


class ExpectedVersionError(WorkerError):
    """A write's expected version did not match the stream's version.

    ``actual`` follows MessageDB: ``-1`` means the stream does not exist yet.
    """

    def __init__(self, stream_name: str, expected: int, actual: int) -> None:
        super().__init__(
            f"wrong expected version for stream {stream_name!r}: "
            f"expected {expected}, stream is at {actual}"
        )
        self.stream_name = stream_name
        self.expected = expected
        self.actual = actual


class MalformedMessageError(WorkerError):
    """A message of a known type whose data does not validate: a permanent error for it."""

    def __init__(self, stream_name: str, position: int, type_name: str, detail: str) -> None:
        super().__init__(
            f"message {stream_name}@{position} of type {type_name!r} is malformed: {detail}"
        )
        self.stream_name = stream_name
        self.position = position
        self.type_name = type_name


class ReplayFailedError(WorkerError):
    """A parked message failed again when replayed: it stays parked with the new error, and so
    do its stream's later messages; the replay request is cleared (no retry until asked)."""

    def __init__(
        self, consumer: str, stream_name: str, position: int, error: str, replayed: int = 0
    ) -> None:
        done = f" after replaying {replayed} message(s)" if replayed else ""
        super().__init__(
            f"replay of {stream_name} for consumer {consumer} failed at "
            f"{stream_name}@{position}{done}: {error}; the stream stays parked"
        )
        self.consumer = consumer
        self.stream_name = stream_name
        self.position = position
        self.error = error
        self.replayed = replayed


class MissingRowError(WorkerError, LookupError):
    """``Table.update`` of a read-model row that does not exist: the handler's message fails
    (retried, then parked) rather than its change being lost; ``update_if_present`` skips a
    missing row, ``add`` creates it."""


class InMemorySQLError(WorkerError):
    """Code under test ran SQL on a connection of the in-memory testing kit (a handler using
    ``ctx.conn``): it needs PostgreSQL. Use ``ctx.table`` and ``ctx.write``, or test it against
    a database."""


class NotAwaitedError(WorkerError):
    """A handler returned without awaiting what its ``ctx`` handed it (``ctx.write``): that
    work was never done, so the message fails (retried, then parked) instead of being lost."""


class RegistrationError(WorkerError):
    """A domain element (event, aggregate, projector, handler) is declared inconsistently."""


class UnknownOptionError(RegistrationError, TypeError):
    """A projector or handler given an option it does not take (a ``TypeError`` too, as a bad
    keyword is)."""


class UndeclaredReadModelError(RegistrationError):
    """A handler used ``ctx.table(Model)`` for a read model its projector does not declare in
    ``read_models=``: it fails like any handler error, in memory as on PostgreSQL."""


class MissingApplyError(RegistrationError):
    """An event-sourced aggregate meets an event type it has no ``@apply`` method for."""


class AggregateNotFoundError(WorkerError, LookupError):
    """The repository has no aggregate with this id (no events, no snapshot, no state row)."""

    def __init__(self, aggregate: str, ident: str) -> None:
        super().__init__(f"{aggregate} {ident!r} does not exist")
        self.aggregate = aggregate
        self.id = ident


class MessageNotFoundError(WorkerError, LookupError):
    """No stored message has the global position or id asked for."""


class VersionConflictError(WorkerError):
    """Saving an aggregate found it changed since it was loaded; nothing was written.

    ``expected`` is the aggregate version the save was based on; reload and retry the command.
    """

    def __init__(self, aggregate: str, ident: str, expected: int) -> None:
        super().__init__(
            f"{aggregate} {ident!r} was changed concurrently: saved at version {expected}, "
            "but the store has moved on; reload it and try again"
        )
        self.aggregate = aggregate
        self.id = ident
        self.expected = expected


class LeaseLostError(WorkerError):
    """Another process took over this consumer: this one must not commit anything more."""


class PositionMovedError(LeaseLostError):
    """The committed position is not where this batch started (already committed, or reset):
    the consumer starts again from the committed position."""


class ConsumerStoppedError(WorkerError):
    """A consumer gave up on a message with the ``stop`` action and halted."""


class ProcessError(WorkerError):
    """A process manager's handler used its instance or ``ctx.schedule`` in a way that cannot
    work (a deadline no handler takes, an event that names no instance)."""


class ProcessConflictError(WorkerError):
    """Two transactions changed one process manager instance at once: the later one is rolled
    back and retried, as a serialization failure is."""

    def __init__(self, stream_name: str, expected: int, actual: int) -> None:
        super().__init__(
            f"process instance {stream_name} changed under this step (expected version "
            f"{expected}, stream at {actual}): retried"
        )
        self.stream_name = stream_name
