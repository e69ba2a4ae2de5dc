"""``worker.open_store``: application code gets a ready store from domain.toml, as the CLI does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import Field

from worker import BaseAggregate, BaseEvent, Domain, apply, open_store
from worker.errors import InstallError
from worker.store.conventions import PROTEAN

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
    with pytest.raises(InstallError, match="MessageDB is not installed"):
        await open_store(event_store={"database_uri": server_dsn})
