"""A projector that fails on accounts listed in ``poison``, for the dead-letter commands.

It reads the ``picky`` category only, so the counter's fault tests never meet it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from counter import domain

from worker import BaseEvent, on

if TYPE_CHECKING:
    from worker import Context


@domain.event(category="picky")
class Noted(BaseEvent):
    """Entry ``seq`` of ``account_id``."""

    account_id: str
    seq: int


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS public.notes (account_id text, seq int, n bigserial);"
    "CREATE TABLE IF NOT EXISTS public.poison"
    " (account_id text PRIMARY KEY, reason text NOT NULL DEFAULT 'poisoned')"
)


@domain.projector(name="notes", stream_categories=["picky"], max_attempts=2)
class NotesProjector:
    """Appends each entry to ``notes``; raises while its account is listed in ``poison``
    (the error says the listed ``reason``)."""

    async def setup(self, conn: Any) -> None:
        await conn.execute(SCHEMA)

    @on(Noted)
    async def noted(self, event: Noted, ctx: Context) -> None:
        reason = await ctx.conn.fetchval(
            "SELECT reason FROM public.poison WHERE account_id = $1", event.account_id
        )
        if reason is not None:
            raise RuntimeError(f"account {event.account_id} is {reason}")
        await ctx.conn.execute(
            "INSERT INTO public.notes (account_id, seq) VALUES ($1, $2)",
            event.account_id,
            event.seq,
        )
