"""The testing kit's harness: projectors and handlers run in memory with the engine's own
batches, routes and context (no database)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from worker import BaseEvent, Context, Domain, Increment, NewMessage, ReadModel, handle, on
from worker.errors import InMemorySQLError, MalformedMessageError
from worker.testing import MemoryMessageStore, in_stream, project

pytestmark = pytest.mark.anyio

domain = Domain("bank")


@domain.event(category="acct")
class Opened(BaseEvent):
    account: str
    owner: str


@domain.event(category="acct")
class Deposited(BaseEvent):
    account: str
    amount: int


@domain.event(category="acct")
class Tagged(BaseEvent):
    account: str
    tag: str


@domain.event(category="acct")
class Closed(BaseEvent):
    account: str


@domain.event(category="audit")
class Audited(BaseEvent):
    account: str


class Account(ReadModel):
    __table__ = "accounts"
    __key__ = "account"

    account: str
    owner: str
    balance: int = 0
    deposits: int = 0


class TagCount(ReadModel):
    __table__ = "tag_counts"
    __key__ = "tag"

    tag: str
    count: int = 0


@domain.projector(name="accounts", read_models=[Account, TagCount])
class Accounts:
    @on(Opened)
    def opened(self, event: Opened, ctx: Context) -> None:
        ctx.table(Account).put(Account(account=event.account, owner=event.owner))

    @on(Deposited)
    async def deposited(self, event: Deposited, ctx: Context) -> None:
        ctx.table(Account).update_if_present(
            event.account, balance=Increment(event.amount), deposits=Increment(1)
        )

    @on(Tagged)
    def tagged(self, event: Tagged, ctx: Context) -> None:
        ctx.table(TagCount).add(event.tag, count=Increment(1))

    @on(Closed)
    def closed(self, event: Closed, ctx: Context) -> None:
        ctx.table(Account).delete(event.account)


def history() -> list[Any]:
    return [
        *in_stream("acct-1", Opened(account="1", owner="ann"), Deposited(account="1", amount=5)),
        *in_stream("acct-2", Opened(account="2", owner="bob"), Tagged(account="2", tag="vip")),
        *in_stream("acct-1", Deposited(account="1", amount=7), Tagged(account="1", tag="vip")),
        *in_stream("acct-3", Deposited(account="3", amount=1), Tagged(account="3", tag="new")),
        *in_stream("acct-2", Closed(account="2")),
    ]


async def test_a_projector_folds_events_into_its_read_models() -> None:
    """put, update_if_present with Increment, add creating rows, delete; an
    update_if_present of a missing row changes nothing; the consumer's position is the category
    head."""
    result = await project(Accounts, history(), domain=domain)
    assert result.rows(Account) == [Account(account="1", owner="ann", balance=12, deposits=2)]
    assert result.by_key(TagCount) == {
        "new": TagCount(tag="new", count=1),
        "vip": TagCount(tag="vip", count=2),
    }
    assert result.positions == {"accounts:acct": 9}
    assert result.position_store.committed("accounts:acct", 9)
    assert result.parked == [] and result.emitted == []


async def test_the_result_is_the_same_whatever_the_batch_size() -> None:
    """Batches of 1, 2, 3 or all messages give the same rows (the merge rules are the
    Table's own)."""
    expected = (await project(Accounts, history(), domain=domain)).rows(Account)
    for size in (1, 2, 3):
        result = await project(Accounts, history(), domain=domain, batch_size=size)
        assert result.rows(Account) == expected, size


async def test_a_run_carries_on_from_an_earlier_one() -> None:
    """``after=`` keeps the messages, rows and positions: only the new events are handled."""
    first = await project(Accounts, history()[:4], domain=domain)
    second = await project(
        Accounts,
        in_stream("acct-1", Deposited(account="1", amount=100)),
        domain=domain,
        after=first,
    )
    assert second.row(Account, "1") == Account(account="1", owner="ann", balance=105, deposits=2)
    assert second.positions == {"accounts:acct": 5}


async def test_events_can_come_from_a_memory_message_store() -> None:
    """A MemoryMessageStore holding messages is read as the event store."""
    store = MemoryMessageStore()
    for stream_name, message in history():
        await store.write(stream_name, message)
    result = await project(Accounts, store, domain=domain)
    assert result.row(Account, "1") is not None and result.store is store


# -- an event handler that writes messages ------------------------------------------------


class SendWelcome(BaseEvent):
    owner: str


@domain.event_handler(name="welcomer")
class Welcomer:
    def __init__(self) -> None:
        self.keys: list[str] = []

    @handle(Opened)
    async def opened(self, event: Opened, ctx: Context) -> None:
        self.keys.append(ctx.idempotency_key)
        await ctx.write(f"welcome:command-{event.account}", SendWelcome(owner=event.owner))
        await ctx.write(f"welcome:command-{event.account}", NewMessage("Logged", {"n": 2}))


async def test_a_handler_emits_messages_that_follow_the_handled_one() -> None:
    """ctx.write writes in the batch's transaction, with causation and correlation metadata
    and ids derived from (consumer, message, n): the same on every run."""
    opened = NewMessage(
        "Opened",
        {"account": "7", "owner": "cy"},
        {"correlationStreamName": "signup-9"},
        id=str(uuid.uuid4()),
    )
    result = await project(Welcomer, [("acct-7", opened)], domain=domain)
    assert [(m.stream_name, m.type, m.data) for m in result.emitted] == [
        ("welcome:command-7", "SendWelcome", {"owner": "cy"}),
        ("welcome:command-7", "Logged", {"n": 2}),
    ]
    first = result.emitted[0]
    assert first.metadata == {
        "causationMessageStreamName": "acct-7",
        "causationMessagePosition": 0,
        "causationMessageGlobalPosition": 1,
        "correlationStreamName": "signup-9",
    }
    assert result.instances["welcomer:acct"].keys == [opened.id]
    again = await project(Welcomer, [("acct-7", opened)], domain=domain)
    assert [m.id for m in again.emitted] == [m.id for m in result.emitted]


# -- failures ---------------------------------------------------------------------------------


def failing_projector(fails: set[tuple[str, int]], calls: list[tuple[str, int]]) -> type[Any]:
    """A projector counting deposits per account; it raises on the (account, amount) in
    ``fails`` and records every call."""

    class Counter:
        @on(Deposited)
        def deposited(self, event: Deposited, ctx: Context) -> None:
            calls.append((event.account, event.amount))
            if (event.account, event.amount) in fails:
                raise RuntimeError(f"cannot handle {event.account}/{event.amount}")
            ctx.table(Account).add(
                event.account, owner="?", balance=Increment(event.amount), deposits=Increment(1)
            )

    return Counter


def deposits(accounts: int, per_account: int) -> list[Any]:
    """Deposits of amounts 1..per_account, interleaved across streams."""
    return [
        (f"acct-{a}", Deposited(account=str(a), amount=n).to_message())
        for n in range(1, per_account + 1)
        for a in range(accounts)
    ]


async def test_a_failing_message_is_retried_then_parked_with_its_stream_behind_it() -> None:
    """The failing message is tried max_attempts times and parked; its stream's later messages
    are parked behind it, unhandled; other streams go on; the position passes all of them."""
    calls: list[tuple[str, int]] = []
    result = await project(failing_projector({("1", 2)}, calls), deposits(3, 4), max_attempts=3)
    assert calls.count(("1", 2)) == 3
    assert ("1", 3) not in calls and ("1", 4) not in calls
    assert [(p.stream_name, p.position, p.blocked_by is not None) for p in result.parked] == [
        ("acct-1", 1, False),
        ("acct-1", 2, True),
        ("acct-1", 3, True),
    ]
    first = result.parked[0]
    assert isinstance(first.error, RuntimeError) and first.listing.attempts == 3
    assert result.parked_messages.has("acct-1") and not result.parked_messages.has("acct-0")
    assert {r.account: r.balance for r in result.rows(Account)} == {"0": 10, "1": 1, "2": 10}
    assert result.positions == {"Counter:acct": 12}


async def test_a_failure_rolls_back_the_batch_so_nothing_is_applied_twice() -> None:
    """The messages before the failing one are applied again as a batch after the rollback:
    their increments count once."""
    calls: list[tuple[str, int]] = []
    result = await project(failing_projector({("0", 3)}, calls), deposits(2, 5), max_attempts=2)
    assert calls.count(("0", 1)) == 2  # in the failed batch, then in its redone head
    assert {r.account: (r.balance, r.deposits) for r in result.rows(Account)} == {
        "0": (1 + 2, 2),
        "1": (15, 5),
    }
    assert result.transactions.rolled_back >= 2


async def test_malformed_data_is_parked_at_once() -> None:
    """Data that does not validate against the event class is parked without a retry."""
    calls: list[tuple[str, int]] = []
    bad = NewMessage("Deposited", {"account": "5", "amount": "lots"})
    result = await project(
        failing_projector(set(), calls),
        [*deposits(1, 1), ("acct-5", bad), *in_stream("acct-6", Deposited(account="6", amount=1))],
    )
    assert "5" not in {account for account, _ in calls}  # never reached the handler
    assert {r.account: r.deposits for r in result.rows(Account)} == {"0": 1, "6": 1}
    (parked,) = result.parked
    assert parked.stream_name == "acct-5" and isinstance(parked.error, MalformedMessageError)
    assert parked.listing.attempts == 1


async def test_stop_halts_the_consumer_at_the_failing_message() -> None:
    """on_failure="stop": the consumer stops before the failing message (its position stays
    at the one before), nothing is parked, nothing after it is handled."""
    calls: list[tuple[str, int]] = []
    result = await project(
        failing_projector({("0", 2)}, calls), deposits(2, 3), on_failure="stop", max_attempts=2
    )
    assert list(result.stopped) == ["Counter:acct"]
    assert isinstance(result.stopped["Counter:acct"], RuntimeError)
    assert result.positions == {"Counter:acct": 2}  # acct-0@0, acct-1@0
    assert result.parked == []
    assert ("0", 3) not in calls and ("1", 2) not in calls


async def test_a_stopped_consumer_leaves_the_others_running() -> None:
    """A subscriber of two categories: one consumer stops, the other catches up."""
    seen: list[str] = []

    class Both:
        @on(Deposited)
        def deposited(self, event: Deposited, ctx: Context) -> None:
            raise RuntimeError("broken")

        @on(Audited)
        def audited(self, event: Audited, ctx: Context) -> None:
            seen.append(event.account)

    result = await project(
        Both,
        [*deposits(1, 2), *in_stream("audit-1", Audited(account="1"), Audited(account="2"))],
        on_failure="stop",
        max_attempts=1,
    )
    assert list(result.stopped) == ["Both:acct"]
    assert seen == ["1", "2"] and result.positions == {"Both:audit": 4}


async def test_sql_on_ctx_conn_says_it_cannot_run_in_memory() -> None:
    """A handler that runs SQL itself needs PostgreSQL: project raises a clear error."""

    class Raw:
        @on(Deposited)
        async def deposited(self, event: Deposited, ctx: Context) -> None:
            await ctx.conn.execute("INSERT INTO ledger VALUES ($1)", event.amount)

    with pytest.raises(InMemorySQLError, match=r"SQL on ctx.conn cannot run in memory"):
        await project(Raw, deposits(1, 1))


async def test_a_transient_error_from_a_handler_is_raised_not_retried_forever() -> None:
    """The worker retries a connection error without end; the harness gives up and raises it."""

    class Offline:
        @on(Deposited)
        def deposited(self, event: Deposited, ctx: Context) -> None:
            raise ConnectionError("mail server unreachable")

    with pytest.raises(ConnectionError, match="unreachable"):
        await project(Offline, deposits(1, 1))


async def test_consumer_group_members_share_a_category() -> None:
    """group_size=3: three consumers, each with its own position, together handle every
    stream once."""
    group = Domain("groups")
    group.register_event(Deposited, category="acct")

    @group.projector(name="grouped", read_models=[Account], group_size=3)
    class Grouped:
        @on(Deposited)
        def deposited(self, event: Deposited, ctx: Context) -> None:
            ctx.table(Account).add(event.account, owner="?", balance=Increment(event.amount))

    result = await project(Grouped, deposits(10, 3), domain=group)
    assert result.consumers == [f"grouped:acct@{m}/3" for m in range(3)]
    assert {r.account: r.balance for r in result.rows(Account)} == {str(a): 6 for a in range(10)}
    assert set(result.positions) == set(result.consumers)


class Owner(ReadModel):
    __table__ = "owners"
    __key__ = "account"

    account: str
    owner: str  # no default: a new row needs it


async def test_a_failing_flush_is_traced_to_its_message() -> None:
    """A batch whose read-model writes fail at the end (a new row without a required column)
    is redone message by message: only the message that caused it is parked."""

    class Owners:
        @on(Deposited)
        def deposited(self, event: Deposited, ctx: Context) -> None:
            changes = {} if event.account == "1" else {"owner": "ann"}
            ctx.table(Owner).add(event.account, **changes)

    result = await project(Owners, deposits(3, 2), max_attempts=1)
    assert [(p.stream_name, p.position) for p in result.parked] == [("acct-1", 0), ("acct-1", 1)]
    assert type(result.parked[0].error).__name__ == "NotNullViolationError"
    assert [r.account for r in result.rows(Owner)] == ["0", "2"]


async def test_handlers_that_feed_themselves_are_stopped() -> None:
    """A handler writing into the category it reads never catches up: the run ends with an
    error instead of running forever."""

    class Echo:
        @handle(Deposited)
        async def deposited(self, event: Deposited, ctx: Context) -> None:
            await ctx.write(f"acct-{event.account}", Deposited(account=event.account, amount=1))

    with pytest.raises(RuntimeError, match="more than 50 messages"):
        await project(Echo, deposits(1, 1), batch_size=10, max_emitted=50)


async def test_a_batch_no_handler_takes_moves_the_position_in_one_statement() -> None:
    """Batches of types nobody handles commit only the position, each in one statement of its
    own (no transaction); the batch holding the one handled message is a transaction."""
    seen: list[str] = []

    class Audits:
        @on(Audited)
        def audited(self, event: Audited, ctx: Context) -> None:
            seen.append(event.account)

    noise = [("audit-noise", NewMessage("Unrelated", {"n": n})) for n in range(40)]
    noise_after = [("audit-noise", NewMessage("Unrelated", {"n": n})) for n in range(9)]
    events = [*noise, *in_stream("audit-1", Audited(account="1")), *noise_after]
    result = await project(Audits, events, batch_size=10)
    assert seen == ["1"]
    assert result.positions == {"Audits:audit": 50}
    assert result.transactions.committed == 1
    assert result.transactions.statements == 4
