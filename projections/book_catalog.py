"""``book_catalog``: the current state of every book, built from ``BookFactEvent`` alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain import BookFactEvent, domain
from worker import ReadModel, on

if TYPE_CHECKING:
    from worker import Context


class BookCatalog(ReadModel):
    """One book as it stands after its latest save."""

    __table__ = "book_catalog"
    __key__ = "book_id"

    book_id: str
    title: str
    author: str
    isbn: str | None = None
    price: float
    published: bool
    version: int  # the book's version: its fact event's stream position + 1


@domain.projector(name="book_catalog", stream_categories=["book:fact"], read_models=[BookCatalog])
class BookCatalogProjector:
    """Keeps each book's latest state; it never needs the book's domain events.

    A fact event carries the whole state, so the newest version wins and an older one (a fact
    stream replayed, or read out of order after a reset) changes nothing.
    """

    @on(BookFactEvent)
    async def saved(self, event: BookFactEvent, ctx: Context) -> None:
        version = ctx.message.position + 1
        books = ctx.table(BookCatalog)
        current = await books.get(event.id)
        if current is not None and current.version >= version:
            return
        books.put(
            BookCatalog(
                book_id=event.id,
                title=event.title,
                author=event.author,
                isbn=event.isbn,
                price=event.price,
                published=event.published,
                version=version,
            )
        )
