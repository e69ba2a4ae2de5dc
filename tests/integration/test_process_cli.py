"""Operating process managers from the command line: ``worker processes``, ``worker status``,
a reset that asks first, and a rebuild that is refused."""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from domain import OrderItem, OrderPlaced
from tests.cli import EXAMPLE_APP, ROOT, Result, worker

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio


async def answering(dsn: str, answer: str, *args: str) -> Result:
    """``worker ARGS`` on the example application, ``answer`` typed at its prompt."""
    environment = {**os.environ, "WORKER_EVENT_STORE__DATABASE_URI": dsn}
    command = [sys.executable, "-m", "worker", "--config", str(EXAMPLE_APP), *args]
    with anyio.fail_after(90):
        done = await anyio.run_process(
            command, input=answer.encode(), env=environment, cwd=ROOT, check=False
        )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


async def placed_and_run(dsn: str, store: MessageStore) -> None:
    item = OrderItem(product_id="p", quantity=1, price=Decimal("3.00"))
    placed = OrderPlaced(order_id="o1", customer_name="Ada", items=[item])
    await store.write("order-o1", placed.to_message())
    ran = await worker(dsn, "run", "--until-caught-up", config=EXAMPLE_APP)
    assert ran.code == 0, ran


async def test_worker_processes_reports_instances_and_deadlines(
    worker_dsn: str, worker_store: MessageStore
) -> None:
    """One order placed: one active fulfillment instance, shown in JSON and in status."""
    await placed_and_run(worker_dsn, worker_store)
    shown = await worker(worker_dsn, "processes", "--json", config=EXAMPLE_APP)
    assert shown.code == 0, shown
    (row,) = json.loads(shown.stdout)
    assert (row["name"], row["category"], row["instances"]) == ("fulfillment", "fulfillment", 1)
    assert row["categories"] == ["inventory", "order", "payment"]
    status = await worker(worker_dsn, "status", config=EXAMPLE_APP, COLUMNS="200")
    assert status.code == 0, status
    assert "fulfillment (fulfillment)" in status.stdout


async def test_resetting_a_process_managers_consumer_asks_first(
    worker_dsn: str, worker_store: MessageStore, worker_pool: asyncpg.Pool[Any]
) -> None:
    """Answered no: nothing moves (exit 1); with --yes: the position is reset."""
    await placed_and_run(worker_dsn, worker_store)
    refused = await answering(worker_dsn, "n\n", "reset", "fulfillment:order", "--to", "0")
    assert refused.code == 1, refused
    assert "is a consumer of process manager 'fulfillment'" in refused.stdout
    position = "SELECT position FROM worker.positions WHERE consumer = 'fulfillment:order'"
    assert await worker_pool.fetchval(position) == 1
    done = await answering(worker_dsn, "", "reset", "fulfillment:order", "--to", "0", "--yes")
    assert done.code == 0, done
    assert await worker_pool.fetchval(position) == 0


async def test_a_process_manager_is_never_rebuilt(worker_dsn: str) -> None:
    """``worker rebuild`` refuses it, saying why."""
    refused = await worker(worker_dsn, "rebuild", "fulfillment", config=EXAMPLE_APP)
    assert refused.code == 1, refused
    assert "is a process manager: it is never rebuilt" in refused.stderr
