"""Notes whose event gained a field: version 1 stored ``text``, version 2 ``body`` and
``words``. Loaded by the ``worker`` command from this folder's domain.toml, never imported by
the tests."""

from __future__ import annotations

from typing import Any

from worker import BaseEvent, Domain

domain = Domain("notes")


@domain.event(category="note", version=2)
class Noted(BaseEvent):
    """A note was taken."""

    body: str
    words: int


@domain.upcaster(Noted, from_version=1)
def _text_to_body(data: dict[str, Any]) -> dict[str, Any]:
    text = data.pop("text")
    return {**data, "body": text, "words": len(text.split())}
