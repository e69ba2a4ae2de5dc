"""Database administration for scripts, benchmarks and tools beside the worker: databases on a
server, the embedded server, the NOTIFY trigger, consumer groups' member indexes, read-model
table names, the process's garbage collector; and what ``worker status`` and
``worker projections`` report (``consumer_status``, ``watch_status``, ``projection_status``).
A public module (like ``worker`` and
``worker.testing``): what it names stays.
"""

from worker.ops.collector import tune as tune_collector
from worker.ops.settings import MessageDBSettings
from worker.ops.status import consumer_status, projection_status
from worker.ops.status import watch as watch_status
from worker.read.model import physical as table_name
from worker.read.model import view_name
from worker.store.database import is_embedded, start_embedded, with_database
from worker.store.group_index import create_group_index, group_index_ready
from worker.store.installer import quote_identifier
from worker.store.message import utc_time
from worker.store.schema import set_notify_trigger

__all__ = [
    "MessageDBSettings",
    "consumer_status",
    "create_group_index",
    "group_index_ready",
    "is_embedded",
    "projection_status",
    "quote_identifier",
    "set_notify_trigger",
    "start_embedded",
    "table_name",
    "tune_collector",
    "utc_time",
    "view_name",
    "watch_status",
    "with_database",
]
