"""The console's Messages page: a stream, a category's newest messages, or one message with its
causation tree, read with the code ``worker events read``, ``tail``, ``show`` and ``trace`` use
(``worker.store.browser``, ``worker.store.causation``, ``worker.ops.browser``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from worker.errors import UsageError, WorkerError
from worker.ops import browser
from worker.store import browser as finder
from worker.store import causation
from worker.store.message_store import MessageStore

if TYPE_CHECKING:
    from collections.abc import Mapping

    from worker.ops.console.state import Console

SHOWN = 100  # messages a stream or a category lists at most


def _text(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


async def _message(console: Console, key: str) -> dict[str, Any]:
    """One message as ``worker events show`` sees it, and its causation tree."""
    found = browser.view(console.app.domain, await finder.find_message(console.pool, key))
    tree = await causation.trace(console.pool, key)
    nodes = []
    for depth, node in tree.root.walk():
        here = node.message.global_position == tree.focus
        nodes.append({**node.message.to_json(), "depth": depth, "focus": here})
    shown = found.to_json()
    return {
        "view": shown,
        "data": _text(shown["data"]),
        "metadata": _text(shown["metadata"]),
        "upcast": None if found.upcast is None else _text(found.upcast),
        "tree": nodes,
        "missing_cause": tree.missing_cause is not None,
        "truncated": tree.truncated,
    }


def _start(text: str) -> int:
    """The stream position to read from: a whole number, 0 when not given."""
    if not text.strip():
        return 0
    if not text.strip().isdigit():
        raise UsageError(f"from must be a whole number (0 or more), got {text!r}")
    return int(text)


async def messages(console: Console, query: Mapping[str, str]) -> dict[str, Any]:
    """What the page shows for its query: ``message`` (a global position or an id), ``stream``
    (from ``from``), or ``category`` (its newest); a bad or unknown one is said in one line."""
    wanted = {key: query.get(key, "").strip() for key in ("message", "stream", "category")}
    found: dict[str, Any] = {"query": wanted, "rows": None, "message": None, "problem": None}
    try:
        if wanted["message"]:
            found["message"] = await _message(console, wanted["message"])
        elif wanted["stream"]:
            start = _start(query.get("from", ""))
            rows = await MessageStore(console.pool).read_stream(wanted["stream"], start, SHOWN)
            found["rows"] = [browser.message_json(m) for m in rows]
        elif wanted["category"]:
            rows = await finder.newest(console.pool, wanted["category"], SHOWN)
            found["rows"] = [browser.message_json(m) for m in rows]
    except WorkerError as problem:
        found["problem"] = str(problem)
    return found
