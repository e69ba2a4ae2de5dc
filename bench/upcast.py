"""Upcasting cost: the engine's no-op catch-up when every stored message needs one upcast.

On the engine benchmark's scratch database (100,000 Order events written at schema version 1),
the no-op projector runs alternately (``--pairs`` times) over event classes at version 1 (no
upcast) and over the same classes declared at version 2 with an upcaster from 1 (every message
upcast: metadata read, payload decoded to a dict, the upcaster run, the model validated from the
dict). Reports both rates and the median and range of the per-pair ratios (goal: >= 80%).

    .venv/bin/python -m bench.upcast [--events N] [--pairs P]
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from bench.engine import (
    CATEGORY,
    EVENTS_PER_STREAM,
    engine_catch_up,
    fresh_database,
    noop_domain,
    paired_rates,
    server_dsn,
    write_events,
)
from domain import OrderConfirmed, OrderPlaced, OrderShipped
from worker import Domain, configure_logging, load_settings, on

if TYPE_CHECKING:
    from worker import Context


def upcast_domain() -> Domain:
    """The no-op projector over the Order events declared at version 2, upcast from 1."""
    bench = Domain("bench-upcast")
    classes = []
    for base in (OrderPlaced, OrderConfirmed, OrderShipped):
        cls = type(base.__name__, (base,), {"__module__": __name__})
        bench.register_event(cls, category=CATEGORY, type_name=base.__name__, version=2)
        bench.upcaster(cls, from_version=1)(lambda data: {**data})
        classes.append(cls)
    bench.check()

    @bench.projector(name="noop", stream_categories=[CATEGORY])
    class NoOpProjector:
        @on(*classes)
        async def any_event(self, event: Any, ctx: Context) -> None:
            pass

    return bench


async def main(events: int, pairs: int) -> None:
    configure_logging("warning")
    settings = load_settings().worker
    dsn = await fresh_database(server_dsn())
    streams = events // EVENTS_PER_STREAM
    await write_events(dsn, streams)
    n = streams * EVENTS_PER_STREAM
    plain, upcast, ratios = await paired_rates(
        partial(engine_catch_up, dsn, settings, noop_domain(), "noop"),
        partial(engine_catch_up, dsn, settings, upcast_domain(), "noop"),
        pairs,
        n,
    )
    print(
        f"{n:,} events; no-op without upcasting {plain:,.0f} events/s, with one upcast per "
        f"message {upcast:,.0f} events/s"
    )
    print(
        f"ratio {statistics.median(ratios):.0%} (median of {pairs} pairs, "
        f"{min(ratios):.0%}-{max(ratios):.0%}); goal >= 80%"
    )


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=5)
    options = parser.parse_args()
    anyio.run(main, options.events, options.pairs)


if __name__ == "__main__":
    run()
