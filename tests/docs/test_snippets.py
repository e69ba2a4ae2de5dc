"""Every Python block of README.md and docs/ runs, so the documentation cannot drift from the
code: a page's blocks in order in one namespace, with ``dsn`` naming a fresh database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from tests.docs.snippets import ROOT, pages, python_blocks, run_page
from worker import MessageStore

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

RUN = [page for page in pages() if any(b.marker is None for b in python_blocks(page))]


def test_every_python_block_runs_or_says_why_not() -> None:
    """A Python block is run, or is a file of the first application, or gives a reason not to
    run; the blocks left out are few."""
    blocks = [block for page in pages() for block in python_blocks(page)]
    not_run = [block for block in blocks if block.marker == "not-run"]
    assert all(block.argument for block in not_run)
    assert len(not_run) <= 3, [block.where for block in not_run]
    assert sum(block.marker != "not-run" for block in blocks) >= 12


def test_the_pages_with_python_are_found() -> None:
    """The runner sees the README's and the reference's Python blocks (a fence it did not
    parse would leave a page out silently)."""
    names = {page.relative_to(ROOT).as_posix() for page in RUN}
    assert {"docs/message-store.md", "docs/write-side.md", "docs/read-side.md"} <= names
    assert {"docs/testing.md"} <= names


@pytest.mark.parametrize("page", RUN, ids=lambda page: page.relative_to(ROOT).as_posix())
async def test_the_python_blocks_of_a_page_run(
    page: Path, database_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each page's blocks run in order against a fresh database; `open_store` and the
    `worker` settings find it through ``WORKER_EVENT_STORE__DATABASE_URI``."""
    monkeypatch.setenv("WORKER_EVENT_STORE__DATABASE_URI", database_dsn)
    monkeypatch.delenv("WORKER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    opened: list[Any] = []
    try:
        ran = await run_page(page, {"dsn": database_dsn}, opened)
    finally:
        await close_pools(opened)
    assert ran == sum(block.marker is None for block in python_blocks(page))


async def close_pools(values: list[Any]) -> None:
    """Close the pools a page's blocks opened and left open (a reader's process would end)."""
    for value in values:
        pool = value.executor if isinstance(value, MessageStore) else value
        if isinstance(pool, asyncpg.Pool) and not pool.is_closing():
            await pool.close()
