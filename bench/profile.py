"""Where the engine's time goes: cProfile of one catch-up, per event.

On the engine benchmark's scratch database (``--events`` Order events), the named projector
(``noop`` or ``order_summary``) catches up once unprofiled (warm-up), then once under cProfile;
prints the functions with the most own time, in microseconds per event.

    .venv/bin/python -m bench.profile [--projector noop|order_summary] [--events N] [--top K]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from typing import Any

import anyio

from bench.engine import (
    EVENTS_PER_STREAM,
    ROOT,
    engine_catch_up,
    fresh_database,
    noop_domain,
    server_dsn,
    summary_domain,
    write_events,
)
from worker import configure_logging, load_settings
from worker.admin import tune_collector


async def main(projector: str, events: int) -> tuple[cProfile.Profile, int, float]:
    configure_logging("warning")
    settings = load_settings().worker
    tune_collector(settings.gc_threshold)  # as the worker process sets it
    dsn = await fresh_database(server_dsn())
    await write_events(dsn, events // EVENTS_PER_STREAM)
    domain = noop_domain() if projector == "noop" else summary_domain()
    await engine_catch_up(dsn, settings, domain, projector)  # warm-up
    profile = cProfile.Profile()
    profile.enable()
    count, seconds = await engine_catch_up(dsn, settings, domain, projector)
    profile.disable()
    return profile, count, seconds


def report(profile: cProfile.Profile, count: int, seconds: float, top: int) -> str:
    stats: Any = pstats.Stats(profile)
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    lines = [
        f"{count:,} events in {seconds:.2f} s profiled ({seconds / count * 1e6:.2f} µs/event)",
        "",
        "| own µs/event | cum µs/event | calls/event | function |",
        "|---:|---:|---:|---|",
    ]
    for (path, line, name), (_, calls, own, cumulative, _) in rows:
        where = _short(path)
        lines.append(
            f"| {own / count * 1e6:.2f} | {cumulative / count * 1e6:.2f} | "
            f"{calls / count:.3f} | `{name}` ({where}:{line}) |"
        )
    return "\n".join(lines)


def _short(path: str) -> str:
    """A profiled file's path from the checkout, site-packages or the standard library."""
    if path.startswith(f"{ROOT}/"):
        return path[len(str(ROOT)) + 1 :]
    for marker in ("/site-packages/", f"/python{sys.version_info[0]}.{sys.version_info[1]}/"):
        if marker in path:
            return path.rsplit(marker, 1)[-1]
    return path


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projector", choices=["noop", "order_summary"], default="noop")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=15)
    options = parser.parse_args()
    profile, count, seconds = anyio.run(main, options.projector, options.events)
    print(report(profile, count, seconds, options.top))


if __name__ == "__main__":
    run()
