"""A small inline SVG line chart of a consumer's rate over the last minute."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

WIDTH = 120
HEIGHT = 24


def sparkline(values: Sequence[float]) -> str:
    """An ``<svg>`` drawing ``values`` (messages per second, oldest first) scaled to the
    highest; its title says the latest and the highest. Only numbers go into the markup."""
    if not values:
        empty = "<title>no rate yet</title>"
        return f'<svg class="spark" width="{WIDTH}" height="{HEIGHT}">{empty}</svg>'
    top = max(values) or 1.0
    step = WIDTH / max(len(values) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{HEIGHT - 1 - (v / top) * (HEIGHT - 2):.1f}" for i, v in enumerate(values)
    )
    title = f"{values[-1]:.1f} msg/s now, {max(values):.1f} at most in the last minute"
    return (
        f'<svg class="spark" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">'
        f"<title>{title}</title>"
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>'
    )
