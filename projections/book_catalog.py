"""``book_catalog``: the current state of every book, built from ``BookFactEvent`` alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from domain import BookFactEvent, domain
from worker import on

if TYPE_CHECKING:
    from worker import Context

SCHEMA = """
CREATE TABLE IF NOT EXISTS book_catalog (
    book_id   text PRIMARY KEY,
    title     text NOT NULL,
    author    text NOT NULL,
    isbn      text,
    price     numeric(12, 2) NOT NULL,
    published boolean NOT NULL,
    version   bigint NOT NULL
)
"""

# A fact event carries the whole state: the newest version wins, an older one changes nothing.
_UPSERT = """
INSERT INTO book_catalog AS b (book_id, title, author, isbn, price, published, version)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (book_id) DO UPDATE
SET title = EXCLUDED.title, author = EXCLUDED.author, isbn = EXCLUDED.isbn,
    price = EXCLUDED.price, published = EXCLUDED.published, version = EXCLUDED.version
WHERE b.version < EXCLUDED.version
"""


@domain.projector(name="book_catalog", stream_categories=["book:fact"])
class BookCatalogProjector:
    """Upserts each book's latest state; it never needs the book's domain events."""

    async def setup(self, conn: Any) -> None:
        """Create the table (the worker calls this once before consuming)."""
        await conn.execute(SCHEMA)

    @on(BookFactEvent)
    async def saved(self, event: Any, ctx: Context) -> None:
        await ctx.conn.execute(
            _UPSERT,
            event.id,
            event.title,
            event.author,
            event.isbn,
            event.price,
            event.published,
            ctx.message.position + 1,  # fact stream position = version - 1
        )
