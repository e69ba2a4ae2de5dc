"""Event sourcing and an async projection worker on the genuine MessageDB."""

from typing import TYPE_CHECKING

from worker.domain import Domain
from worker.engine.context import Context
from worker.engine.options import SubscriberOptions
from worker.engine.process import ProcessManager
from worker.engine.retry import Retry, RetryPolicy
from worker.engine.subscriber import handle, on
from worker.errors import (
    AggregateNotFoundError,
    ConfigurationError,
    DatabaseUnavailableError,
    ExpectedVersionError,
    InstallError,
    InvalidStreamNameError,
    MalformedMessageError,
    MessageNotFoundError,
    MissingApplyError,
    MissingRowError,
    NotAwaitedError,
    ProcessConflictError,
    ProcessError,
    RegistrationError,
    UndeclaredReadModelError,
    VersionConflictError,
    WorkerError,
)
from worker.model.aggregate import BaseAggregate, apply
from worker.model.entity import BaseEntity
from worker.model.event import BaseEvent
from worker.model.repository import Repository
from worker.ops.app import App, open_app, open_store, resolve_dsn
from worker.ops.log import configure_logging
from worker.ops.settings import Settings, WorkerSettings, load_settings
from worker.read.model import Increment, ReadModel
from worker.store.causation import CausationTree
from worker.store.causation import trace as trace_causation
from worker.store.database import Database, connect, create_pool, redact
from worker.store.installer import install
from worker.store.message import Message, NewMessage
from worker.store.message_store import MessageStore
from worker.store.metadata import follow
from worker.store.tracing import TelemetryUnavailableError, span
from worker.store.tracing import start as start_tracing
from worker.store.tracing import stop as stop_tracing

if TYPE_CHECKING:
    from worker.engine.runner import Runner  # what the factory below builds
else:
    from worker.ops.runner import Runner  # the engine's Runner with a process's services

__all__ = [
    "AggregateNotFoundError",
    "App",
    "BaseAggregate",
    "BaseEntity",
    "BaseEvent",
    "CausationTree",
    "ConfigurationError",
    "Context",
    "Database",
    "DatabaseUnavailableError",
    "Domain",
    "ExpectedVersionError",
    "Increment",
    "InstallError",
    "InvalidStreamNameError",
    "MalformedMessageError",
    "Message",
    "MessageNotFoundError",
    "MessageStore",
    "MissingApplyError",
    "MissingRowError",
    "NewMessage",
    "NotAwaitedError",
    "ProcessConflictError",
    "ProcessError",
    "ProcessManager",
    "ReadModel",
    "RegistrationError",
    "Repository",
    "Retry",
    "RetryPolicy",
    "Runner",
    "Settings",
    "SubscriberOptions",
    "TelemetryUnavailableError",
    "UndeclaredReadModelError",
    "VersionConflictError",
    "WorkerError",
    "WorkerSettings",
    "apply",
    "configure_logging",
    "connect",
    "create_pool",
    "follow",
    "handle",
    "install",
    "load_settings",
    "on",
    "open_app",
    "open_store",
    "redact",
    "resolve_dsn",
    "span",
    "start_tracing",
    "stop_tracing",
    "trace_causation",
]
