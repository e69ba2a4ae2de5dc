"""The example application's projectors and handler, run in memory by the testing kit, fold the
shop's history as the oracle says (the same history the PostgreSQL tests project)."""

from __future__ import annotations

import pytest

from domain import domain
from handlers.notifications import ShipmentNotifier
from projections.order_summary import OrderSummary, OrderSummaryProjector
from projections.orders_by_status import OrdersByStatus, OrdersByStatusProjector
from tests.shop import write_orders
from worker.testing import MemoryMessageStore, project

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
async def test_the_example_projections_fold_the_history(batch_size: int) -> None:
    """order_summary holds each order with each event applied once; orders_by_status adds up."""
    store = MemoryMessageStore()
    fold = await write_orders(store, 120, seed=3)
    summary = await project(OrderSummaryProjector, store, domain=domain, batch_size=batch_size)
    assert {
        r.order_id: (r.status, r.item_count, r.total, r.events) for r in summary.rows(OrderSummary)
    } == fold.orders
    by_status = await project(OrdersByStatusProjector, store, domain=domain, batch_size=batch_size)
    counts = {r.status: r.orders for r in by_status.rows(OrdersByStatus)}
    assert {s: counts.get(s, 0) for s in fold.statuses()} == fold.statuses()
    assert by_status.positions == {"orders_by_status:order": store.messages()[-1].global_position}


async def test_the_example_handler_asks_once_per_shipped_order() -> None:
    """One SendShipmentNotification per shipped order, following its OrderShipped."""
    store = MemoryMessageStore()
    fold = await write_orders(store, 60, seed=4)
    result = await project(ShipmentNotifier, store, domain=domain, batch_size=5)
    shipped = sorted(o for o, (status, *_) in fold.orders.items() if status == "SHIPPED")
    assert sorted(m.data["order_id"] for m in result.emitted) == shipped
    assert {m.type for m in result.emitted} == {"SendShipmentNotification"}
    for m in result.emitted:
        assert m.stream_name == f"notification:command-{m.data['order_id']}"
        assert m.metadata is not None
        assert m.metadata["causationMessageStreamName"] == f"order-{m.data['order_id']}"
