"""The demo: write an order's history to MessageDB, then read the category back and print it."""

from __future__ import annotations

import uuid

import anyio

from worker import MessageStore, NewMessage, create_pool, load_settings, resolve_dsn
from worker.log import configure_logging


async def main() -> None:
    settings = load_settings()
    configure_logging(settings.worker.log_level, settings.worker.log_format)
    dsn = resolve_dsn(settings)
    pool = await create_pool(dsn)
    async with MessageStore(pool) as store:
        order_id = uuid.uuid4().hex[:8]
        stream = f"order-{order_id}"
        await store.write_batch(
            stream,
            [
                NewMessage("OrderPlaced", {"order_id": order_id, "customer_name": "Alice"}),
                NewMessage("OrderConfirmed", {"order_id": order_id}),
                NewMessage("OrderShipped", {"order_id": order_id, "tracking": "ABC123"}),
            ],
            expected_version=-1,
        )
        print(f"wrote 3 events to {stream}; the 'order' category now holds:")
        position = 1
        while batch := await store.read_category("order", position, batch_size=500):
            for m in batch:
                print(
                    f"  {m.global_position:>6}  {m.stream_name:<16} {m.position:>3}  "
                    f"{m.type:<15} {m.data}"
                )
            position = batch[-1].global_position + 1


if __name__ == "__main__":
    anyio.run(main)
