"""What the stream browser reads: a message named by its global position or its id, and a
category's newest messages. The command line and the console render what these return."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from worker.errors import MessageNotFoundError, UsageError
from worker.store import queries as q
from worker.store.message import Message
from worker.store.stream_name import check_category

if TYPE_CHECKING:
    from worker.store.types import Executor

MessageKey = int | str  # a global position, or a message id (a UUID, as text)


def message_key(text: str) -> MessageKey:
    """``text`` as a global position (a whole number from 1) or a message id (a UUID); anything
    else is a ``UsageError`` saying so."""
    text = text.strip()
    if re.fullmatch(r"[0-9]{1,18}", text) and int(text) > 0:
        return int(text)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise UsageError(
            f"message {text!r} is neither a global position (a whole number from 1) "
            "nor a message id (a UUID)"
        ) from None


async def find_message(executor: Executor, key: MessageKey) -> Message:
    """The message at global position ``key`` (an int) or with id ``key`` (a UUID; text is
    read as ``message_key`` reads it); ``MessageNotFoundError`` when there is none."""
    if isinstance(key, str):
        key = message_key(key)
    if isinstance(key, int):
        found = await executor.fetchrow(q.READ_BY_GLOBAL_POSITION, key, record_class=Message)
        where = f"at global position {key}"
    else:
        found = await executor.fetchrow(q.READ_BY_ID, key, record_class=Message)
        where = f"with id {key}"
    if found is None:
        raise MessageNotFoundError(f"no message {where} in the store")
    message: Message = found
    return message


async def newest(executor: Executor, category: str, limit: int) -> list[Message]:
    """The newest ``limit`` messages of ``category``, oldest first."""
    check_category(category)
    rows: list[Message] = await executor.fetch(
        q.CATEGORY_TAIL, category, limit, record_class=Message
    )
    return rows
