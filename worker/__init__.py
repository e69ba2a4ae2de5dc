"""Event sourcing and an async projection worker on the genuine MessageDB."""

from worker.database import connect, create_pool, redact, resolve_dsn
from worker.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    ExpectedVersionError,
    InstallError,
    InvalidStreamNameError,
    WorkerError,
)
from worker.installer import install
from worker.message import Message, NewMessage
from worker.message_store import MessageStore
from worker.settings import Settings, load_settings

__all__ = [
    "ConfigurationError",
    "DatabaseUnavailableError",
    "ExpectedVersionError",
    "InstallError",
    "InvalidStreamNameError",
    "Message",
    "MessageStore",
    "NewMessage",
    "Settings",
    "WorkerError",
    "connect",
    "create_pool",
    "install",
    "load_settings",
    "redact",
    "resolve_dsn",
]
