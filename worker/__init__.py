"""Event sourcing and an async projection worker on the genuine MessageDB."""

from worker.aggregate import BaseAggregate, apply
from worker.context import Context
from worker.database import connect, create_pool, redact, resolve_dsn
from worker.domain import Domain
from worker.entity import BaseEntity
from worker.errors import (
    AggregateNotFoundError,
    ConfigurationError,
    DatabaseUnavailableError,
    ExpectedVersionError,
    InstallError,
    InvalidStreamNameError,
    MissingApplyError,
    VersionConflictError,
    WorkerError,
)
from worker.event import BaseEvent
from worker.installer import install
from worker.message import Message, NewMessage
from worker.message_store import MessageStore
from worker.metadata import follow
from worker.read_model import Increment, ReadModel
from worker.repository import Repository
from worker.retry import Retry, RetryPolicy
from worker.runner import Runner
from worker.settings import Settings, load_settings
from worker.subscriber import handle, on

__all__ = [
    "AggregateNotFoundError",
    "BaseAggregate",
    "BaseEntity",
    "BaseEvent",
    "ConfigurationError",
    "Context",
    "DatabaseUnavailableError",
    "Domain",
    "ExpectedVersionError",
    "Increment",
    "InstallError",
    "InvalidStreamNameError",
    "Message",
    "MessageStore",
    "MissingApplyError",
    "NewMessage",
    "ReadModel",
    "Repository",
    "Retry",
    "RetryPolicy",
    "Runner",
    "Settings",
    "VersionConflictError",
    "WorkerError",
    "apply",
    "connect",
    "create_pool",
    "follow",
    "handle",
    "install",
    "load_settings",
    "on",
    "redact",
    "resolve_dsn",
]
