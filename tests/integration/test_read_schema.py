"""Read models live in the read-model schema (``public`` unless configured), never in MessageDB's
``message_store``; names that would shadow MessageDB's objects are refused."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import domain as shop
import projections  # noqa: F401  (registers the example projectors on the shop domain)
from domain import Book, Order, OrderItem
from projections.order_summary import OrderSummary
from tests.cli import EXAMPLE_APP, worker
from worker import BaseEvent, Context, Domain, ReadModel, Runner, WorkerError, on
from worker.errors import RegistrationError
from worker.ops.settings import WorkerSettings
from worker.store.database import create_pool
from worker.store.read_schema import MESSAGE_DB_NAMES

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio

SETTINGS = WorkerSettings(batch_size=100, retry_base_delay=0.001, poll_interval_max=0.05)

_WHERE = """
SELECT table_schema FROM information_schema.tables WHERE table_name = $1 ORDER BY 1
"""


async def schemas_of(conn: Any, table: str) -> list[str]:
    """The schemas holding a table or view of that name."""
    return [row[0] for row in await conn.fetch(_WHERE, table)]


async def write_shop(store: MessageStore) -> None:
    """Two orders and a book (its fact event feeds book_catalog)."""
    orders = shop.domain.repository_for(Order, store)
    for customer in ("Ada", "Bo"):
        item = OrderItem(product_id="dune", quantity=2, price="9.99")
        await orders.add(Order.place(customer, [item]))
    await shop.domain.repository_for(Book, store).add(Book(title="Dune", author="FH", price=9))


async def test_example_read_models_land_in_public_never_in_message_store(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """`worker run` of the example app: the table book_catalog's setup creates without a schema
    and the ReadModel order_summary both land in public, with their rows."""
    await write_shop(store)
    result = await worker(
        database_dsn,
        "run",
        "--until-caught-up",
        "--only",
        "book_catalog",
        "--only",
        "order_summary",
        config=EXAMPLE_APP,
    )
    assert result.code == 0, result
    assert await schemas_of(pool, "book_catalog") == ["public"]
    assert await schemas_of(pool, "order_summary") == ["public"]
    assert await schemas_of(pool, "order_summary__g1") == ["public"]
    assert await pool.fetchval("SELECT count(*) FROM public.book_catalog") == 1
    assert await pool.fetchval("SELECT count(*) FROM public.order_summary") == 2


async def test_a_named_read_model_schema_is_created_and_holds_every_read_model(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """With read_model_schema = "reporting", the worker creates that schema and both kinds of
    table land there; readers on a pool of that schema find the rows."""
    await write_shop(store)
    settings = SETTINGS.model_copy(update={"read_model_schema": "reporting"})
    runner = Runner(shop.domain, database_dsn, settings, only=["book_catalog", "order_summary"])
    await runner.run(until_caught_up=True, handle_signals=False)
    for table in ("book_catalog", "order_summary", "order_summary__g1"):
        assert await schemas_of(pool, table) == ["reporting"], table
    reporting = await create_pool(database_dsn, read_model_schema="reporting")
    try:
        assert [
            row.customer_name
            for row in await OrderSummary.find(reporting, order_by="customer_name")
        ] == ["Ada", "Bo"]
        assert await reporting.fetchval("SELECT title FROM book_catalog") == "Dune"
    finally:
        await reporting.close()


class Noted(BaseEvent):
    text: str


def noting_domain(table: str) -> Domain:
    """A projector whose ``setup`` creates ``table`` without naming a schema."""
    domain = Domain("notes")
    domain.register_event(Noted, category="note")

    @domain.projector(name="notes", stream_categories=["note"])
    class Notes:
        async def setup(self, conn: Any) -> None:
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (text text)")

        @on(Noted)
        async def noted(self, event: Noted, ctx: Context) -> None:
            await ctx.conn.execute(f"INSERT INTO {table} VALUES ($1)", event.text)

    return domain


async def test_a_table_made_in_setup_lands_in_public(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A projector's own unqualified CREATE TABLE and INSERT go to the read-model schema."""
    await store.write("note-1", Noted(text="hello").to_message())
    await Runner(noting_domain("jottings"), database_dsn, SETTINGS).run(
        until_caught_up=True, handle_signals=False
    )
    assert await schemas_of(pool, "jottings") == ["public"]
    assert await pool.fetchval("SELECT text FROM public.jottings") == "hello"


async def test_a_setup_table_shadowing_message_db_is_refused(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A table named `messages` in the read-model schema would take the place of MessageDB's in
    its own functions: the worker refuses to run, naming it, and writes nothing."""
    await store.write("note-1", Noted(text="hello").to_message())
    runner = Runner(noting_domain("messages"), database_dsn, SETTINGS)
    with pytest.raises(WorkerError, match=r'"public"\.messages shadows MessageDB'):
        await runner.run(until_caught_up=True, handle_signals=False)
    assert await pool.fetchval("SELECT count(*) FROM public.messages") == 0


@pytest.mark.parametrize(
    "table",
    [
        "messages",
        "message",
        "category",
        "write_message",
        "get_category_messages",
        "stream_summary",
        "Messages",
    ],
)
def test_a_read_model_named_like_message_db_is_refused(table: str) -> None:
    """Defining a ReadModel whose table MessageDB's functions would find instead of their own
    fails at once, naming the table."""
    with pytest.raises(RegistrationError, match=rf"table name '{table}' is MessageDB's"):

        class Clash(ReadModel):
            __table__ = table
            __key__ = "k"
            k: str


async def test_reserved_names_cover_every_message_db_object(pool: asyncpg.Pool[Any]) -> None:
    """Every table, view, type and function in schema message_store is a reserved name."""
    rows = await pool.fetch(
        """
        SELECT relname FROM pg_class
        WHERE relnamespace = 'message_store'::regnamespace AND relkind IN ('r', 'v', 'm', 'p')
        UNION SELECT typname FROM pg_type
        WHERE typnamespace = 'message_store'::regnamespace AND typname NOT LIKE '\\_%'
        UNION SELECT proname FROM pg_proc WHERE pronamespace = 'message_store'::regnamespace
        """
    )
    found = {row[0] for row in rows}
    assert found, "nothing found in schema message_store"
    assert found <= MESSAGE_DB_NAMES, sorted(found - MESSAGE_DB_NAMES)


async def test_a_read_model_left_in_message_store_stops_the_worker_until_moved(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A table an earlier version's setup put in message_store would be started afresh in the
    read-model schema, without its rows: the worker refuses, saying how to move it; once moved,
    the projection carries on with its rows."""
    await pool.execute("CREATE TABLE message_store.jottings (text text)")
    await pool.execute("INSERT INTO message_store.jottings VALUES ('before')")
    await store.write("note-1", Noted(text="after").to_message())
    runner = Runner(noting_domain("jottings"), database_dsn, SETTINGS)
    with pytest.raises(WorkerError) as refused:
        await runner.run(until_caught_up=True, handle_signals=False)
    assert "schema message_store holds tables that are not MessageDB's: jottings" in str(
        refused.value
    )
    assert 'ALTER TABLE message_store.jottings SET SCHEMA "public"' in str(refused.value)
    assert await schemas_of(pool, "jottings") == ["message_store"]

    await pool.execute("ALTER TABLE message_store.jottings SET SCHEMA public")
    await Runner(noting_domain("jottings"), database_dsn, SETTINGS).run(
        until_caught_up=True, handle_signals=False
    )
    rows = await pool.fetch("SELECT text FROM public.jottings ORDER BY text")
    assert [row[0] for row in rows] == ["after", "before"]
