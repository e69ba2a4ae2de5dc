"""``worker.open_store``: application code gets a ready store from domain.toml, as the CLI does."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from pydantic import Field

from worker import BaseAggregate, BaseEvent, Domain, apply, open_store
from worker.errors import InstallError, PrivilegeError
from worker.store.conventions import PROTEAN
from worker.store.database import with_database

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

notes = Domain("notes")


@notes.aggregate(is_event_sourced=True)
class Note(BaseAggregate):
    text: str = Field(default="", max_length=50)

    @apply
    def when_written(self, event: Written) -> None:
        self.text = event.text


@notes.event(part_of=Note)
class Written(BaseEvent):
    text: str


def config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "domain.toml"
    path.write_text(body)
    return path


async def test_a_store_and_a_domain_from_domain_toml_and_the_environment(
    tmp_path: Path, database_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DSN comes from WORKER_EVENT_STORE__DATABASE_URI over the file, [domain] settings go
    to the domain given, and the pool closes on leaving."""
    monkeypatch.setenv("WORKER_EVENT_STORE__DATABASE_URI", database_dsn)
    path = config(
        tmp_path,
        '[domain]\nname = "notes"\nconventions = "protean"\nsnapshot_threshold = 5\n'
        '[event_store]\ndatabase_uri = "postgresql://nobody@127.0.0.1:1/none"\n',
    )
    try:
        async with open_store(path, domain=notes) as store:
            assert (notes.conventions, notes.snapshot_threshold) == (PROTEAN, 5)
            note = Note()
            note.raise_(Written(text="hello"))
            await notes.repository_for(Note, store).add(note)
            assert (await notes.repository_for(Note, store).get(note.id)).text == "hello"
            [message] = await store.read_category("notes::note")
            assert message.type == "Notes.Written.v1"
        assert store.executor.is_closing()  # type: ignore[union-attr]
    finally:
        notes.use_conventions("eventide")


async def test_the_file_alone_names_the_database(
    tmp_path: Path, database_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKER_EVENT_STORE__DATABASE_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    config(tmp_path, f'[event_store]\ndatabase_uri = "{database_dsn}"\n')
    store = await open_store()  # ./domain.toml, as `worker` finds it
    try:
        assert await store.category_head("note") is None
    finally:
        await store.executor.close()


async def test_a_database_without_message_db_is_refused_clearly(server_dsn: str) -> None:
    empty = f"wn_{uuid.uuid4().hex[:12]}"  # a database of its own: the server's may hold one
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {empty}")
        try:
            with pytest.raises(InstallError, match="MessageDB is not installed"):
                await open_store(event_store={"database_uri": with_database(server_dsn, empty)})
        finally:
            await admin.execute(f"DROP DATABASE {empty} WITH (FORCE)")
    finally:
        await admin.close()


@notes.aggregate(fact_events=True)
class Label(BaseAggregate):
    name: str = ""


async def test_the_seeds_message_store_login_needs_grants_only_for_state_rows(
    database_dsn: str,
) -> None:
    """The role MessageDB's install creates (the seed's ``message_store`` user) holds every right
    an event-sourced application needs; state rows need the worker schema's grants on top."""
    parts = urlsplit(database_dsn)  # (a host and port, or the embedded server's socket folder)
    where = parts.netloc.rpartition("@")[2]
    as_message_store = urlunsplit(parts._replace(netloc=f"message_store@{where}"))
    try:
        await (await asyncpg.connect(as_message_store)).close()
    except asyncpg.InvalidAuthorizationSpecificationError as error:
        pytest.skip(f"the server does not let message_store log in without a password: {error}")
    event_sourced = Domain("diary")

    @event_sourced.aggregate(is_event_sourced=True)
    class Entry(BaseAggregate):
        text: str = ""

        @apply
        def when_noted(self, event: Noted) -> None:
            self.text = event.text

    @event_sourced.event(part_of=Entry)
    class Noted(BaseEvent):
        text: str

    settings = {"event_store": {"database_uri": as_message_store}}
    async with open_store(domain=event_sourced, **settings) as store:
        entry = Entry()
        entry.raise_(Noted(text="dear diary"))
        await event_sourced.repository_for(Entry, store).add(entry)
        assert (await event_sourced.repository_for(Entry, store).get(entry.id)).text == "dear diary"
    with pytest.raises(PrivilegeError, match=r'role "message_store" lacks USAGE on schema worker'):
        await open_store(domain=notes, **settings)
