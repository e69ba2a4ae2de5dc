"""Messages as MessageDB stores them, and messages about to be written."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import orjson


class _Row(Protocol):
    def __getitem__(self, index: int, /) -> Any: ...


class MessageFields:
    """The named fields of a stored message, read from a row in MessageDB's column order
    (id, stream_name, type, position, global_position, data, metadata, time).

    Shared by ``Message`` (an asyncpg record) and the in-memory stand-in of
    ``worker.testing`` (a tuple), so code that reads messages cannot tell them apart.
    """

    __slots__ = ()

    @property
    def id(self: _Row) -> str:
        value: str = self[0]
        return value

    @property
    def stream_name(self: _Row) -> str:
        value: str = self[1]
        return value

    @property
    def type(self: _Row) -> str:
        value: str = self[2]
        return value

    @property
    def position(self: _Row) -> int:
        value: int = self[3]
        return value

    @property
    def global_position(self: _Row) -> int:
        value: int = self[4]
        return value

    @property
    def data_json(self: _Row) -> str:
        """The data as stored (JSON text); ``{}`` when MessageDB holds NULL."""
        value: str | None = self[5]
        return value or "{}"

    @property
    def data(self: _Message) -> dict[str, Any]:
        """The data, decoded."""
        value: dict[str, Any] = orjson.loads(self.data_json)
        return value

    @property
    def metadata_json(self: _Row) -> str | None:
        """The metadata as stored (JSON text), or ``None``."""
        value: str | None = self[6]
        return value

    @property
    def metadata(self: _Message) -> dict[str, Any] | None:
        """The metadata, decoded; ``None`` when there is none or it is not a JSON object.

        MessageDB stores any JSON value there; other writers may leave an array, a string or
        a number, which carries none of the keys this package reads.
        """
        raw = self.metadata_json
        if raw is None:
            return None
        value = orjson.loads(raw)
        return value if isinstance(value, dict) else None

    @property
    def time(self: _Row) -> datetime:
        """When the message was written (UTC).

        Rows carry it as MessageDB's ISO text (``2025-01-01 00:05:00.123456``), turned into a
        ``datetime`` only when asked: decoding a timestamp costs a row more than its text.
        """
        value: datetime | str = self[7]
        if type(value) is str:
            # Messages written in one transaction share their time (MessageDB's ``now()``), and
            # a batch reads them one after another: the last time parsed is kept.
            last = _last_time
            if value == last[0]:
                return last[1]
            return _parse_time(value)
        assert isinstance(value, datetime)  # the in-memory stand-in's
        return value

    @property
    def category(self: _Message) -> str:
        """The stream's category: the text before the first ``-``."""
        return self.stream_name.split("-", 1)[0]

    def __repr__(self: _Message) -> str:
        return f"<Message {self.stream_name}@{self.position} #{self.global_position} {self.type}>"


_last_time: tuple[str | None, datetime] = (None, datetime.min)  # (no text is None)


def _parse_time(text: str) -> datetime:
    global _last_time  # (one pair, replaced whole: safe across threads)
    parsed = utc_time(text)
    _last_time = (text, parsed)
    return parsed


def utc_time(text: str) -> datetime:
    """A stored message's time, as the text of PostgreSQL's ISO date style, in UTC."""
    try:
        return datetime.fromisoformat(text + "+00:00")  # 5x faster than .replace(tzinfo=)
    except ValueError:
        raise ValueError(
            f"message time {text!r} is not in ISO form: the connection's DateStyle must be "
            "ISO (PostgreSQL's default; the worker's own connections set it)"
        ) from None


class _Message(_Row, Protocol):
    @property
    def stream_name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def global_position(self) -> int: ...
    @property
    def data_json(self) -> str: ...
    @property
    def metadata_json(self) -> str | None: ...


class Message(MessageFields, asyncpg.Record):
    """One row of ``message_store.messages``, in MessageDB's column order.

    Rows are built by asyncpg itself (``record_class=Message``): no Python object per row.
    ``data`` and ``metadata`` arrive as JSON text and are decoded when read (each access
    decodes again: keep the result); typed events are validated straight from the text.
    ``time`` is timezone-aware UTC (MessageDB stores UTC without a zone).
    """

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to write: its id is chosen here, so it is known before the write commits."""

    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
