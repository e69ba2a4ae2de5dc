"""In memory, ``ctx.table(Model)`` for a read model the subscriber does not declare fails the
message as on PostgreSQL (retried, then parked), with one line naming both."""

from __future__ import annotations

from typing import Any

import pytest

from worker import BaseEvent, Context, Domain, ReadModel, handle, on
from worker.testing import in_stream, project

pytestmark = pytest.mark.anyio

domain = Domain("undeclared")


@domain.event(category="visit")
class Visited(BaseEvent):
    page: str


class Page(ReadModel):
    __table__ = "undeclared_pages"
    __key__ = "page"

    page: str
    visits: int = 0


class Referrer(ReadModel):
    __table__ = "undeclared_referrers"
    __key__ = "page"

    page: str


@domain.projector(name="pages", read_models=[Page])
class Pages:
    @on(Visited)
    def visited(self, event: Visited, ctx: Context) -> None:
        ctx.table(Page).add(event.page, visits=1)
        ctx.table(Referrer).put(Referrer(page=event.page))


@domain.event_handler(name="counter")
class Counter:
    @handle(Visited)
    def visited(self, event: Visited, ctx: Context) -> None:
        ctx.table(Page).add(event.page, visits=1)


VISITS = in_stream("visit-1", Visited(page="/"), Visited(page="/about"))


def parked_errors(result: Any) -> list[str]:
    return [str(p.failure.error) for p in result.parked if p.failure is not None]


async def test_a_projector_using_an_undeclared_read_model_parks_the_message() -> None:
    """``read_models=[Page]`` and ``ctx.table(Referrer)``: the message fails with one line naming
    the projector and the read model; nothing of its batch is applied."""
    result = await project(Pages, VISITS, domain=domain, max_attempts=2)
    assert result.rows(Page) == []
    assert [p.message.position for p in result.parked] == [0, 1]
    assert parked_errors(result) == [
        "projector 'pages' uses ctx.table(Referrer), a read model it does not declare: add "
        "Referrer to its read_models=[...]"
    ]
    assert result.parked[0].failure is not None and result.parked[0].failure.attempts == 2


async def test_a_registered_class_given_without_its_domain_is_checked_too() -> None:
    """``project(Pages, ...)`` without ``domain=``: the read models it was registered with
    still apply."""
    result = await project(Pages, VISITS, max_attempts=1)
    assert type(result.parked[0].failure.error).__name__ == "UndeclaredReadModelError"  # type: ignore[union-attr]


async def test_an_event_handler_using_a_read_model_is_told_to_be_a_projector() -> None:
    """Event handlers declare no read models: ``ctx.table`` in one fails, saying what to do."""
    result = await project(Counter, VISITS, domain=domain, max_attempts=1)
    assert parked_errors(result) == [
        "handler 'counter' uses ctx.table(Page), a read model it does not declare: an event "
        "handler has no read models: make it a projector with read_models=[Page]"
    ]
