"""Events that changed over time: stored payloads of older versions are upcast wherever a message
becomes an event (repository loads, the engine, dead-letter replays); nothing is rewritten."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.test_engine import FAST
from worker import BaseAggregate, BaseEvent, Context, Domain, NewMessage, Runner, apply, on
from worker.engine.factory import build_consumer
from worker.errors import RegistrationError

if TYPE_CHECKING:
    from pathlib import Path

    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio


def shop(fail_on: set[str] | None = None) -> Domain:
    """``Placed`` at version 3: v1 had ``name``; v2 renamed it ``customer``; v3 added
    ``channel``. A projector records what it received; it fails for customers in ``fail_on``."""
    domain = Domain("upcasting")

    @domain.aggregate(is_event_sourced=True, stream_category="sale")
    class Sale(BaseAggregate):
        customer: str = ""
        channel: str = ""

        @apply
        def placed(self, event: Placed) -> None:
            self.customer, self.channel = event.customer, event.channel

    @domain.event(part_of=Sale, version=3)
    class Placed(BaseEvent):
        sale_id: str
        customer: str
        channel: str

    @domain.upcaster(Placed, from_version=1)
    def rename_name(data: dict[str, Any]) -> dict[str, Any]:
        data["customer"] = data.pop("name")
        return data

    @domain.upcaster(Placed, from_version=2)
    def add_channel(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "channel": "shop"}

    @domain.projector(name="sales", stream_categories=["sale"])
    class Sales:
        async def setup(self, conn: Any) -> None:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS sales (sale_id text PRIMARY KEY, customer text, "
                "channel text)"
            )

        @on(Placed)
        async def placed(self, event: Placed, ctx: Context) -> None:
            if event.customer in (fail_on or set()):
                raise RuntimeError(f"cannot take {event.customer} yet")
            await ctx.conn.execute(
                "INSERT INTO sales VALUES ($1, $2, $3)",
                event.sale_id,
                event.customer,
                event.channel,
            )

    domain.check()
    return domain


async def history(store: MessageStore) -> None:
    """One sale stored at each version: v1 (no schemaVersion), v2 and v3."""
    await store.write("sale-1", NewMessage("Placed", {"sale_id": "1", "name": "Ada"}))
    await store.write(
        "sale-2",
        NewMessage("Placed", {"sale_id": "2", "customer": "Bo"}, metadata={"schemaVersion": 2}),
    )
    placed = shop().event_class("Placed")
    assert placed is not None
    current = placed(sale_id="3", customer="Cy", channel="web")
    await store.write("sale-3", current.to_message())


async def test_the_repository_loads_aggregates_from_every_version(store: MessageStore) -> None:
    """Each sale loads through the upcaster chain from the version it was written at."""
    await history(store)
    domain = shop()
    sales = domain.repository_for(domain.aggregates[0], store)
    loaded = {i: await sales.get(i) for i in ("1", "2", "3")}
    assert {i: (s.customer, s.channel) for i, s in loaded.items()} == {  # type: ignore[attr-defined]
        "1": ("Ada", "shop"),
        "2": ("Bo", "shop"),
        "3": ("Cy", "web"),
    }


async def test_the_engine_projects_every_version_as_the_current_one(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A projector of version 3 receives the v1 and v2 payloads upcast; the store keeps them."""
    await history(store)
    await Runner(shop(), database_dsn, FAST).run(until_caught_up=True, handle_signals=False)
    rows = await pool.fetch("SELECT sale_id, customer, channel FROM sales ORDER BY sale_id")
    assert [tuple(r) for r in rows] == [
        ("1", "Ada", "shop"),
        ("2", "Bo", "shop"),
        ("3", "Cy", "web"),
    ]
    stored = await store.read_stream("sale-1")
    assert stored[0].data == {"sale_id": "1", "name": "Ada"}  # never rewritten


async def test_a_parked_old_message_is_upcast_when_replayed(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A v1 message parked by a failing handler is upcast again when its stream is replayed."""
    await history(store)
    failing = shop(fail_on={"Ada"})
    await Runner(failing, database_dsn, FAST).run(until_caught_up=True, handle_signals=False)
    assert await pool.fetchval("SELECT count(*) FROM worker.dead_letters") == 1
    fixed = shop()
    consumer = build_consumer(
        fixed.subscribers[0].slots()[0], dsn=database_dsn, pool=pool, settings=FAST
    )
    assert await consumer.lease.try_acquire()
    try:
        assert await consumer.replay("sale-1") == 1
    finally:
        await consumer.lease.release()
    customer = await pool.fetchval("SELECT customer FROM sales WHERE sale_id = '1'")
    assert customer == "Ada"


async def test_a_payload_newer_than_the_class_is_parked_as_malformed(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """A message written by newer code (schemaVersion 4 for a class at 3) is parked at once."""
    data = {"sale_id": "9", "customer": "Di", "channel": "web"}
    await store.write("sale-9", NewMessage("Placed", data, metadata={"schemaVersion": 4}))
    await Runner(shop(), database_dsn, FAST).run(until_caught_up=True, handle_signals=False)
    error = await pool.fetchval("SELECT error FROM worker.dead_letters")
    assert "schema version 4" in error, error


def test_registration_refuses_a_step_the_class_does_not_have_or_has_twice() -> None:
    """An upcaster from a version at or past the class's, or a second one for one step, fails
    at registration; a gap in the chain fails ``check`` naming the missing step."""
    domain = Domain("bad")

    @domain.event(category="thing", version=3)
    class Thing(BaseEvent):
        n: int

    with pytest.raises(RegistrationError, match=r"upcasters start at 1 \.\. 2"):
        domain.upcaster(Thing, from_version=3)(lambda data: data)
    domain.upcaster(Thing, from_version=2)(lambda data: data)
    with pytest.raises(RegistrationError, match="version 2 has an upcaster already"):
        domain.upcaster(Thing, from_version=2)(lambda data: data)
    with pytest.raises(RegistrationError, match="no upcaster from version 1"):
        domain.check()


def test_a_gap_in_a_chain_stops_a_command_at_start_in_one_line(tmp_path: Path) -> None:
    """An application whose event is at version 2 with no upcaster from 1: ``worker status``
    exits 1 with one line naming the class and the missing step."""
    (tmp_path / "gappy.py").write_text(
        "from worker import BaseEvent, Domain\n"
        "domain = Domain('gappy')\n"
        "@domain.event(category='thing', version=2)\n"
        "class Thing(BaseEvent):\n"
        "    n: int\n"
    )
    (tmp_path / "domain.toml").write_text(
        '[domain]\nmodules = ["gappy"]\ninstance = "gappy:domain"\n'
        '[event_store]\ndatabase_uri = "postgresql://nobody@127.0.0.1:1/none"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--config", str(tmp_path / "domain.toml"), "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "Thing is at version 2 but has no upcaster from version 1" in result.stderr
