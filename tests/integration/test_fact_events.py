"""Fact events against the genuine MessageDB: state row + BookFactEvent in one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from domain import Book, BookFactEvent, BookPublished
from domain import domain as shop
from worker import AggregateNotFoundError, MessageStore, NewMessage, VersionConflictError

if TYPE_CHECKING:
    import asyncpg

pytestmark = pytest.mark.anyio


async def state_row(pool: asyncpg.Pool[Any], ident: str) -> tuple[int, dict[str, Any]] | None:
    row = await pool.fetchrow(
        "SELECT version, state FROM worker.aggregate_state WHERE category = 'book' AND id = $1",
        ident,
    )
    return None if row is None else (row["version"], row["state"])


async def test_each_save_writes_exactly_one_fact_event_with_full_state(
    store: MessageStore, pool: asyncpg.Pool[Any]
) -> None:
    """Two saves: state row at version 2, two BookFactEvents at positions 0 and 1."""
    books = shop.repository_for(Book, store)
    book = Book(title="Dune", author="Frank Herbert", isbn="978-0441013593")
    await books.add(book)
    assert book.version == 1
    book.price = 9.99
    await books.add(book)
    assert book.version == 2

    facts = await store.read_stream(f"book:fact-{book.id}")
    assert [(m.position, m.type) for m in facts] == [(0, "BookFactEvent"), (1, "BookFactEvent")]
    assert facts[0].data == {**book.model_dump(mode="json"), "price": 0.0}
    assert facts[1].data == book.model_dump(mode="json")
    assert await state_row(pool, book.id) == (2, book.model_dump(mode="json"))
    loaded = await books.get(book.id)
    assert (loaded.model_dump(), loaded.version) == (book.model_dump(), 2)


async def test_fact_events_decode_like_any_event(store: MessageStore) -> None:
    """A consumer of category book:fact decodes BookFactEvent through the domain registry."""
    book = Book(title="Emma", author="Jane Austen")
    await shop.repository_for(Book, store).add(book)
    [message] = await store.read_category("book:fact")
    event = shop.decode(message)
    assert isinstance(event, BookFactEvent)
    assert event.model_dump() == book.model_dump()


async def test_stale_save_changes_neither_state_nor_fact_events(
    store: MessageStore, pool: asyncpg.Pool[Any]
) -> None:
    """A save from a stale load raises VersionConflictError and writes nothing at all."""
    books = shop.repository_for(Book, store)
    book = Book(title="Dune", author="Frank Herbert")
    await books.add(book)
    first, second = await books.get(book.id), await books.get(book.id)
    first.price = 10.0
    await books.add(first)
    second.price = 99.0
    second.publish()

    with pytest.raises(VersionConflictError) as caught:
        await books.add(second)

    assert caught.value.expected == 1
    assert await state_row(pool, book.id) == (2, first.model_dump(mode="json"))
    facts = await store.read_stream(f"book:fact-{book.id}")
    assert [m.data["price"] for m in facts] == [0.0, 10.0]
    assert await store.read_stream(f"book-{book.id}") == []


async def test_two_new_books_with_one_id_conflict(store: MessageStore) -> None:
    """A first save inserts the state row; a second 'first save' of that id conflicts."""
    books = shop.repository_for(Book, store)
    book = Book(title="Dune", author="Frank Herbert")
    await books.add(book)
    twin = Book(id=book.id, title="Other", author="Someone")
    with pytest.raises(VersionConflictError):
        await books.add(twin)
    assert (await books.get(book.id)).title == "Dune"


async def test_raised_domain_events_commit_with_the_state(store: MessageStore) -> None:
    """Events a Book raises go to book-{id}, beside its fact event, in the same save."""
    books = shop.repository_for(Book, store)
    book = Book(title="Dune", author="Frank Herbert")
    book.publish()
    await books.add(book)
    assert book.pending_events == ()
    [published] = await store.read_stream(f"book-{book.id}")
    assert isinstance(shop.decode(published), BookPublished)
    [fact] = await store.read_stream(f"book:fact-{book.id}")
    assert fact.data["published"] is True
    assert fact.global_position < published.global_position


async def test_failed_event_write_rolls_back_state_and_fact(
    store: MessageStore, pool: asyncpg.Pool[Any]
) -> None:
    """When the fact stream already moved on, the save fails and the state row is unchanged."""
    books = shop.repository_for(Book, store)
    book = Book(title="Dune", author="Frank Herbert")
    await store.write(f"book:fact-{book.id}", NewMessage("BookFactEvent", {"stray": True}))
    with pytest.raises(VersionConflictError):
        await books.add(book)
    assert await state_row(pool, book.id) is None
    with pytest.raises(AggregateNotFoundError):
        await books.get(book.id)


async def test_a_save_in_the_callers_transaction_rolls_back_with_it(
    store: MessageStore, pool: asyncpg.Pool[Any]
) -> None:
    """add(book, conn=tx) and the caller rolls back: no state row, no fact event and no domain
    event remain (the fact event is written in the caller's transaction, not beside it)."""
    books = shop.repository_for(Book, store)
    book = Book(title="Dune", author="Frank Herbert")
    book.publish()

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with pool.acquire() as conn, conn.transaction():
            await books.add(book, conn=conn)
            assert await store.stream_version(f"book:fact-{book.id}", conn=conn) == 0
            raise Abort
    assert await store.read_stream(f"book:fact-{book.id}") == []
    assert await store.read_stream(f"book-{book.id}") == []
    assert await state_row(pool, book.id) is None


async def test_invalid_book_is_rejected_before_anything_is_written(
    store: MessageStore, pool: asyncpg.Pool[Any]
) -> None:
    """Too long a title or a missing author fails in the model; nothing reaches the store."""
    with pytest.raises(ValidationError, match="at most 200 characters"):
        Book(title="x" * 201, author="a")
    with pytest.raises(ValidationError, match="author"):
        Book(title="Dune")  # type: ignore[call-arg]
    assert await store.category_head("book:fact") is None
    assert await pool.fetchval("SELECT count(*) FROM worker.aggregate_state") == 0
