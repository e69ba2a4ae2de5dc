"""The seed's Book: state stored in PostgreSQL, a ``BookFactEvent`` with its full state per save."""

from __future__ import annotations

from pydantic import Field

from domain import domain
from worker import BaseAggregate, BaseEvent


@domain.aggregate(fact_events=True)
class Book(BaseAggregate):
    """A catalogue entry; not event-sourced, so its methods change state directly."""

    title: str = Field(max_length=200)
    author: str = Field(max_length=150)
    isbn: str | None = Field(default=None, max_length=17)
    price: float = Field(default=0.0, ge=0)
    published: bool = False

    def publish(self) -> None:
        """Make the book available; raises ``BookPublished`` (written to ``book-{id}``)."""
        if not self.published:
            self.published = True
            self.raise_(BookPublished(book_id=self.id, title=self.title))


@domain.event(part_of=Book)
class BookPublished(BaseEvent):
    """A book became available."""

    book_id: str
    title: str = Field(max_length=200)


BookFactEvent = Book.FactEvent
"""The fact event of every Book save (type ``BookFactEvent``, category ``book:fact``)."""
