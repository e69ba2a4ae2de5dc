"""Process managers in memory: instances found by correlation, started, continued and ended;
commands issued once; deadlines scheduled, cancelled and delivered on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from worker import (
    BaseEvent,
    Context,
    Domain,
    ProcessError,
    ProcessManager,
    RegistrationError,
    handle,
)
from worker.testing import MemoryMessage, given_process, in_stream

pytestmark = pytest.mark.anyio

domain = Domain("pmtest")


@domain.event(category="order")
class OrderPlaced(BaseEvent):
    order_id: str
    amount: int


@domain.event(category="payment")
class PaymentReceived(BaseEvent):
    order_id: str


@domain.event(category="payment")
class PaymentRefused(BaseEvent):
    order_id: str


@domain.event
class PaymentTimedOut(BaseEvent):
    order_id: str


@domain.command(category="payment")
class RequestPayment(BaseEvent):
    order_id: str
    amount: int


@domain.command(category="order")
class CancelOrder(BaseEvent):
    order_id: str
    reason: str


@domain.process_manager(name="checkout")
class Checkout(ProcessManager):
    order_id: str = ""
    amount: int = 0
    status: str = "new"

    @handle(OrderPlaced, correlate="order_id", start=True)
    async def placed(self, event: OrderPlaced, ctx: Context) -> None:
        self.order_id, self.amount, self.status = event.order_id, event.amount, "paying"
        await ctx.write(
            f"payment:command-{event.order_id}",
            RequestPayment(order_id=event.order_id, amount=event.amount),
        )
        ctx.schedule(after=30, message=PaymentTimedOut(order_id=event.order_id))

    @handle(PaymentReceived, correlate="order_id", end=True)
    def paid(self, event: PaymentReceived, ctx: Context) -> None:
        self.status = "paid"
        ctx.cancel(PaymentTimedOut)

    @handle(PaymentRefused, PaymentTimedOut, correlate="order_id", end=True)
    async def failed(self, event: BaseEvent, ctx: Context) -> None:
        self.status = "cancelled"
        await ctx.write(
            f"order:command-{self.order_id}",
            CancelOrder(order_id=self.order_id, reason=type(event).__name__),
        )


def placed(order_id: str, amount: int = 10) -> list[tuple[str, BaseEvent]]:
    return in_stream(f"order-{order_id}", OrderPlaced(order_id=order_id, amount=amount))


async def test_a_start_event_starts_an_instance_that_issues_its_command_once() -> None:
    """OrderPlaced starts instance 1 in checkout-1 and writes one RequestPayment."""
    run = await given_process(Checkout, placed("1", 25))
    instance = run.instance("1")
    assert instance is not None and instance.status == "paying" and instance.amount == 25
    assert [m.type for m in run.commands] == ["RequestPayment"]
    assert [m.stream_name for m in run.transitions()] == ["checkout-1"]
    assert run.stats.started == 1


async def test_a_continuing_event_changes_the_instance_and_ends_it() -> None:
    """PaymentReceived ends the instance and cancels its payment deadline."""
    run = await given_process(
        Checkout, placed("1"), in_stream("payment-1", PaymentReceived(order_id="1"))
    )
    instance = run.instance("1")
    assert instance is not None and instance.status == "paid" and instance.ended
    assert run.deadlines.pending() == []
    assert [d.type for d in run.deadlines.cancelled()] == ["PaymentTimedOut"]


async def test_an_event_of_no_instance_that_may_not_start_one_is_skipped_and_counted() -> None:
    """PaymentReceived for an order never placed: no instance, no error, one skip."""
    run = await given_process(Checkout, in_stream("payment-9", PaymentReceived(order_id="9")))
    assert run.instance("9") is None
    assert run.stats.skipped == 1
    assert run.projected.parked == []


async def test_an_ended_instance_ignores_later_events() -> None:
    """After the instance ended, a refusal changes nothing and issues nothing."""
    run = await given_process(
        Checkout,
        placed("1"),
        in_stream("payment-1", PaymentReceived(order_id="1"), PaymentRefused(order_id="1")),
    )
    assert run.instance("1").status == "paid"  # type: ignore[union-attr]
    assert [m.type for m in run.commands] == ["RequestPayment"]
    assert run.stats.ignored == 1


async def test_a_deadline_is_delivered_once_when_the_clock_reaches_it() -> None:
    """Nothing fires before 30 s; at 30 s the timeout cancels the order, once."""
    run = await given_process(Checkout, placed("1"))
    await run.advance(29)
    assert run.instance("1").status == "paying"  # type: ignore[union-attr]
    await run.advance(1)
    await run.advance(60)
    instance = run.instance("1")
    assert instance is not None and instance.status == "cancelled" and instance.ended
    assert [m.type for m in run.commands] == ["RequestPayment", "CancelOrder"]
    assert len(run.deadlines.fired()) == 1
    assert run.stats.delivered == 1


async def test_a_cancelled_deadline_is_never_delivered() -> None:
    """Paid in time: the timeout never comes."""
    run = await given_process(Checkout, placed("1"))
    await run.then(in_stream("payment-1", PaymentReceived(order_id="1")))
    await run.advance(3600)
    assert run.instance("1").status == "paid"  # type: ignore[union-attr]
    assert run.deadlines.fired() == []


async def test_handling_the_same_event_again_changes_nothing() -> None:
    """A reset replays OrderPlaced: the instance knows it (its transition's id) and skips it."""
    run = await given_process(Checkout, placed("1"))
    await run.projected.position_store.set("checkout:order", 0)  # as `worker reset` does
    await run.advance(0)
    assert [m.type for m in run.commands] == ["RequestPayment"]
    assert len(run.transitions()) == 1
    assert run.stats.repeated == 1


async def test_a_deadline_no_handler_takes_fails_its_step() -> None:
    """Scheduling a message no handler takes is a handler error: parked, never lost."""
    local = Domain("pmbad")

    @local.event(category="order")
    class Placed(BaseEvent):
        order_id: str

    @local.event
    class Stray(BaseEvent):
        order_id: str

    @local.process_manager()
    class Bad(ProcessManager):
        @handle(Placed, correlate="order_id", start=True)
        def placed(self, event: Placed, ctx: Context) -> None:
            ctx.schedule(after=1, message=Stray(order_id=event.order_id))

    run = await given_process(Bad, in_stream("order-1", Placed(order_id="1")), max_attempts=1)
    assert [p.message.type for p in run.projected.parked] == ["Placed"]
    assert "no handler of Stray" in str(run.projected.parked[0].error)


def test_a_handler_without_correlation_is_refused() -> None:
    """Each handler must say how it finds its instance."""
    local = Domain("pmrefused")

    @local.event(category="order")
    class Placed(BaseEvent):
        order_id: str

    with pytest.raises(RegistrationError, match="without correlate="):

        @local.process_manager()
        class NoCorrelation(ProcessManager):
            @handle(Placed)
            def placed(self, event: Placed, ctx: Context) -> None: ...


def test_a_correlation_by_a_field_the_event_lacks_is_refused() -> None:
    """A misspelt ``correlate=`` is refused at registration, naming the field meant (it would
    otherwise find no instance for any event)."""
    local = Domain("pmmisspelt")

    @local.event(category="order")
    class Placed(BaseEvent):
        order_id: str

    with pytest.raises(RegistrationError, match=r"'ordr_id', which is no field of it .*'order_id'"):

        @local.process_manager()
        class Misspelt(ProcessManager):
            @handle(Placed, correlate="ordr_id", start=True)
            def placed(self, event: Placed, ctx: Context) -> None: ...


def test_correlate_on_an_event_handler_is_refused() -> None:
    """start=/correlate= belong to process managers only."""
    local = Domain("pmhandler")

    @local.event(category="order")
    class Placed(BaseEvent):
        order_id: str

    with pytest.raises(RegistrationError, match="only a process manager"):

        @local.event_handler()
        class Handler:
            @handle(Placed, correlate="order_id", start=True)
            def placed(self, event: Placed, ctx: Context) -> None: ...


def test_schedule_outside_a_process_manager_is_refused() -> None:
    """ctx.schedule in an event handler says what it is for."""
    from worker.engine.context import Context as Ctx

    ctx = Ctx("c", None, None)  # type: ignore[arg-type]
    with pytest.raises(ProcessError, match="process manager's handlers only"):
        ctx.schedule(after=1, message=PaymentTimedOut(order_id="1"))


def test_concurrent_partitions_follow_the_instance_not_the_stream() -> None:
    """With concurrency > 1, two streams correlating to one instance share a partition."""
    local = Domain("pmparts")

    @local.event(category="order")
    class Line(BaseEvent):
        order_id: str

    @local.process_manager(concurrency=4)
    class Lines(ProcessManager):
        @handle(Line, correlate="order_id", start=True)
        def line(self, event: Line, ctx: Context) -> None: ...

    (subscriber,) = local.subscribers
    concurrent = subscriber.concurrent
    assert concurrent is not None
    key = concurrent.partition_by

    def message(stream: str, order_id: str, type_name: str = "Line") -> Any:
        data = f'{{"order_id": "{order_id}"}}'
        return MemoryMessage("id", stream, type_name, 0, 1, data, None, datetime.now(UTC))

    assert key(message("order-a", "7")) == key(message("order-b", "7"))
    assert key(message("order-a", "7")) != key(message("order-a", "8"))
    assert key(message("order-a", "7", "Unknown")) == "order-a"


async def test_a_deadline_whose_handler_fails_is_retried_then_given_up() -> None:
    """The timeout's handler keeps failing: tried max_attempts times, then marked failed and
    counted, never delivered; the instance stays as it was."""
    local = Domain("pmfail")

    @local.event(category="order")
    class Placed(BaseEvent):
        order_id: str

    @local.event
    class Late(BaseEvent):
        order_id: str

    @local.process_manager(max_attempts=2)
    class Fragile(ProcessManager):
        status: str = "new"

        @handle(Placed, correlate="order_id", start=True)
        def placed(self, event: Placed, ctx: Context) -> None:
            self.status = "waiting"
            ctx.schedule(after=5, message=Late(order_id=event.order_id))

        @handle(Late, correlate="order_id")
        def late(self, event: Late, ctx: Context) -> None:
            raise RuntimeError("the late handler is broken")

    run = await given_process(Fragile, in_stream("order-1", Placed(order_id="1")), max_attempts=2)
    await run.advance(4)
    assert run.stats.failed_deliveries == 0 and len(run.deadlines.pending()) == 1
    await run.advance(1)  # (the kit's retries do not wait: both attempts now)
    await run.advance(60)
    assert run.stats.failed_deliveries == 2
    assert run.deadlines.pending() == [] and run.deadlines.fired() == []
    (counts,) = await run.deadlines.counts()
    assert counts.failed == 1
    assert run.instance("1").status == "waiting"  # type: ignore[union-attr]


async def test_deadlines_due_together_are_delivered_but_the_one_that_fails() -> None:
    """Three deadlines fall due at once and one handler fails: the other two are delivered,
    the failing one alone is retried."""
    local = Domain("pmbatch")

    @local.event(category="order")
    class Placed(BaseEvent):
        order_id: str

    @local.event
    class Late(BaseEvent):
        order_id: str

    @local.process_manager(max_attempts=5)
    class Timer(ProcessManager):
        status: str = "new"

        @handle(Placed, correlate="order_id", start=True)
        def placed(self, event: Placed, ctx: Context) -> None:
            ctx.schedule(after=5, message=Late(order_id=event.order_id))

        @handle(Late, correlate="order_id", end=True)
        def late(self, event: Late, ctx: Context) -> None:
            if event.order_id == "bad":
                raise RuntimeError("cannot")
            self.status = "late"

    orders = [in_stream(f"order-{o}", Placed(order_id=o)) for o in ("a", "bad", "c")]
    run = await given_process(Timer, [pair for stream in orders for pair in stream])
    await run.advance(5)
    statuses = [getattr(run.instance(o), "status", None) for o in ("a", "bad", "c")]
    assert statuses == ["late", "new", "late"]
    assert sorted(d.instance for d in run.deadlines.fired()) == ["timer-a", "timer-c"]
    assert [d.instance for d in run.deadlines.pending()] == ["timer-bad"]
    assert run.stats.delivered == 2 and run.stats.failed_deliveries >= 1
