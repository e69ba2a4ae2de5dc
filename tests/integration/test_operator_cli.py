"""Operator commands: pause and resume, a live status, the settings in force, projections,
rebuilding them all, and where a new subscriber starts. Each answers bad input in one line."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest

from tests.cli import EXAMPLE_APP, FAULTS_APP, Result, worker
from tests.faults.app import tally
from tests.integration.test_health import get
from tests.integration.test_read_schema import write_shop
from worker import BaseEvent, Context, Domain, NewMessage, Runner, handle
from worker.errors import RegistrationError
from worker.ops.runner import probes_of
from worker.ops.settings import WorkerSettings
from worker.ops.status import watch

if TYPE_CHECKING:
    import asyncpg

    from worker import MessageStore

pytestmark = pytest.mark.anyio

TALLY_APP = FAULTS_APP.with_name("tally.toml")
TALLIES = "tallies:tally"
SETTINGS = WorkerSettings(
    poll_interval_min=0.01, poll_interval_max=0.05, http_port=0, http_host="127.0.0.1"
)


def one_line(result: Result, code: int, *expected: str) -> None:
    assert result.code == code, result
    assert len(result.errors) == 1, result
    for text in expected:
        assert text in result.errors[0], result


def probes(runner: Any) -> Any:
    """The runner's probes server, once started."""
    server = probes_of(runner)
    assert server is not None
    return server


async def tallied(store: MessageStore, *amounts: int) -> int:
    for amount in amounts:
        await store.write("tally-a", NewMessage("Tallied", {"account_id": "a", "amount": amount}))
    head = await store.category_head("tally")
    assert head is not None
    return head


async def until(condition: Any, within: float = 10) -> None:
    with anyio.fail_after(within):
        while not condition():
            await anyio.sleep(0.01)


async def position(pool: asyncpg.Pool[Any], consumer: str = TALLIES) -> int | None:
    found: int | None = await pool.fetchval(
        "SELECT position FROM worker.positions WHERE consumer = $1", consumer
    )
    return found


async def status_of(dsn: str, consumer: str = TALLIES) -> dict[str, Any]:
    result = await worker(dsn, "status", "--json", config=TALLY_APP)
    assert result.code == 0, result
    (row,) = [r for r in json.loads(result.stdout) if r["consumer"] == consumer]
    return dict(row)


# -- pause and resume ---------------------------------------------------------------------------


async def test_pause_holds_a_running_consumer_until_resumed_even_across_a_restart(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """`worker pause` stops the running worker handling the consumer at once: it keeps its
    lease, stays ready, shows as paused in status and metrics, and the pause survives a
    restart; `worker resume` lets it go on from where it was."""
    tally.GATE = None
    head = await tallied(store, 1, 2)
    runner = Runner(tally.domain, database_dsn, SETTINGS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        await until(
            lambda: (
                bool(runner.result.consumers) and runner.result.consumers[0].state == "caught_up"
            )
        )
        consumer = runner.result.consumers[0]
        paused = await worker(
            database_dsn, "pause", "tallies", "--reason", "downstream outage", config=TALLY_APP
        )
        assert paused.code == 0, paused
        assert paused.stdout == f"{TALLIES}: paused\n", paused
        await until(lambda: consumer.state == "paused")
        later = await tallied(store, 3)
        await anyio.sleep(0.3)  # several poll intervals: a running consumer would have moved
        assert await position(pool) == head
        assert probes_of(runner) is not None
        ready, body = await get(probes(runner).port, "/readyz")
        assert ready == 200 and f"{TALLIES}=paused" in body, body
        _, metrics = await get(probes(runner).port, "/metrics")
        assert f'worker_consumer_paused{{consumer="{TALLIES}"}} 1.0' in metrics
        row = await status_of(database_dsn)
        assert row["state"] == "paused" and row["lag_messages"] == 1, row
        assert row["pause_reason"] == "downstream outage" and row["leaseholder"], row
        again = await worker(database_dsn, "pause", TALLIES, config=TALLY_APP)
        assert again.stdout == f"{TALLIES}: was paused already\n", again
        runner.request_stop()

    restarted = Runner(tally.domain, database_dsn, SETTINGS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: restarted.run(handle_signals=False))
        await until(
            lambda: (
                bool(restarted.result.consumers) and restarted.result.consumers[0].state == "paused"
            )
        )
        consumer = restarted.result.consumers[0]
        resumed = await worker(database_dsn, "resume", "tallies", config=TALLY_APP)
        assert resumed.stdout == f"{TALLIES}: resumed\n", resumed
        await until(lambda: consumer.position == later)
        assert consumer.state in ("running", "caught_up")
        restarted.request_stop()
    assert (await status_of(database_dsn))["pause_reason"] is None
    twice = await worker(database_dsn, "resume", TALLIES, config=TALLY_APP)
    assert twice.stdout == f"{TALLIES}: was not paused\n", twice


async def test_run_until_caught_up_leaves_a_paused_consumer_where_it_is(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    """`worker run --until-caught-up` does not wait for a paused consumer: it exits 0, saying
    which consumers are paused, and their positions stay."""
    await tallied(store, 1, 2)
    assert (await worker(database_dsn, "pause", TALLIES, config=TALLY_APP)).code == 0
    ran = await worker(database_dsn, "run", "--until-caught-up", config=TALLY_APP)
    assert ran.code == 0, ran
    assert f"worker: consumers paused (`worker resume` them): {TALLIES}" in ran.stderr, ran
    assert await position(pool) is None


async def test_pause_and_resume_of_unknown_names_exit_2_listing_the_known(
    database_dsn: str,
) -> None:
    for command in ("pause", "resume"):
        result = await worker(database_dsn, command, "tallies", "nope", config=TALLY_APP)
        one_line(result, 2, "nope: no such consumer or subscriber; known: tallies, tallies:tally")
    missing = await worker(database_dsn, "pause", config=TALLY_APP)
    assert missing.code == 2, missing


# -- worker status --watch ----------------------------------------------------------------------


async def test_status_watch_prints_the_frames_asked_for(
    store: MessageStore, database_dsn: str
) -> None:
    """Off a terminal, `status --watch --count N` prints N frames and exits 0; with --json, one
    JSON document per frame, each consumer with its rate (none on the first frame)."""
    await tallied(store, 1)
    shown = await worker(
        database_dsn, "status", "--watch", "--count", "3", "--interval", "0.05", config=TALLY_APP
    )
    assert shown.code == 0, shown
    assert shown.stdout.count("worker status at ") == 3, shown
    assert shown.stdout.count(TALLIES) == 3 and "rate (msg/s)" in shown.stdout, shown
    lines = await worker(
        database_dsn, "status", "--watch", "--json", "--count", "2", "--interval", "0.05",
        config=TALLY_APP,
    )  # fmt: skip
    assert lines.code == 0, lines
    frames = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [f["consumers"][0]["consumer"] for f in frames] == [TALLIES, TALLIES]
    assert frames[0]["consumers"][0]["rate"] is None
    assert frames[1]["consumers"][0]["rate"] == 0.0


async def test_status_watch_rate_is_messages_handled_per_second(
    store: MessageStore, pool: asyncpg.Pool[Any]
) -> None:
    """Between two frames a consumer that moved over five messages shows five messages over the
    time between the frames."""
    head = await tallied(store, *range(5))
    rates = []
    async for frame in watch(pool, tally.domain, interval=0.2, count=2):
        rates.append(frame.rates[TALLIES])
        await pool.execute(
            "INSERT INTO worker.positions (consumer, position) VALUES ($1, $2) "
            "ON CONFLICT (consumer) DO UPDATE SET position = $2",
            TALLIES,
            head,
        )
    assert rates[0] is None
    assert rates[1] is not None and 5 / 0.4 < rates[1] <= 5 / 0.2 + 0.1, rates


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--watch", "--interval", "0"), "--interval must be more than 0 seconds, got 0"),
        (("--watch", "--count", "0"), "--count must be 1 or more, got 0"),
        (("--count", "2"), "--interval and --count go with --watch"),
        (("--interval", "1"), "--interval and --count go with --watch"),
    ],
)
async def test_status_watch_bad_input_is_one_line(
    database_dsn: str, args: tuple[str, ...], expected: str
) -> None:
    one_line(await worker(database_dsn, "status", *args, config=TALLY_APP), 2, expected)


# -- worker config ------------------------------------------------------------------------------


async def test_config_shows_each_key_with_its_source_and_masks_secrets(database_dsn: str) -> None:
    """Environment over file over default; the password of the database URI never shows."""
    parts = urlsplit(database_dsn)  # (a host and port, or the embedded server's socket folder)
    where = parts.netloc.rpartition("@")[2]
    dsn = urlunsplit(parts._replace(netloc=f"{parts.username}:hunter2@{where}"))
    result = await worker(dsn, "config", "--json", config=TALLY_APP, WORKER_WORKER__BATCH_SIZE="7")
    assert result.code == 0, result
    assert "hunter2" not in result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["config_file"] == str(TALLY_APP)
    found = {row["key"]: (row["value"], row["source"]) for row in document["settings"]}
    assert found["[worker] batch_size"] == (7, "environment WORKER_WORKER__BATCH_SIZE")
    assert found["[domain] name"] == ("tally", f"file {TALLY_APP}")
    assert found["[worker] lease_ttl"] == (15.0, "default")
    uri, source = found["[event_store] database_uri"]
    assert uri == dsn.replace("hunter2", "***") and source.startswith("environment"), uri
    table = await worker(dsn, "config", config=TALLY_APP)
    assert table.code == 0, table
    assert f"config file: {TALLY_APP}" in table.stdout and "hunter2" not in table.stdout
    assert "environment WORKER_EVENT_STORE__DATABASE_URI" in table.stdout, table


async def test_config_with_a_bad_value_is_one_line(database_dsn: str) -> None:
    result = await worker(database_dsn, "config", config=TALLY_APP, WORKER_WORKER__BATCH_SIZE="0")
    one_line(result, 1, "invalid configuration", "worker.batch_size")
    extra = await worker(database_dsn, "config", "batch_size", config=TALLY_APP)
    assert extra.code == 2, extra


# -- worker projections and rebuild --all -------------------------------------------------------


async def test_projections_lists_versions_tables_generations_and_lag(
    store: MessageStore, database_dsn: str
) -> None:
    await write_shop(store)
    for args in (("db", "install"), ("run", "--until-caught-up", "--only", "order_summary")):
        done = await worker(database_dsn, *args, config=EXAMPLE_APP)
        assert done.code == 0, done
    result = await worker(database_dsn, "projections", "--json", config=EXAMPLE_APP)
    assert result.code == 0, result
    found = {row["name"]: row for row in json.loads(result.stdout)}
    assert sorted(found) == ["book_catalog", "order_summary", "orders_by_status"]
    summary = found["order_summary"]
    assert summary["version"] == "1" and summary["stored_version"] == "1", summary
    assert summary["categories"] == ["order"] and summary["tables"] == ["order_summary"]
    assert (summary["live"], summary["building"], summary["lag"]) == (1, None, 0), summary
    assert found["orders_by_status"]["lag"] > 0  # not run yet
    assert found["book_catalog"]["categories"] == ["book:fact"]
    table = await worker(database_dsn, "projections", config=EXAMPLE_APP)
    assert table.code == 0 and "order_summary" in table.stdout and "g1" in table.stdout, table
    extra = await worker(database_dsn, "projections", "order_summary", config=EXAMPLE_APP)
    assert extra.code == 2, extra


async def test_rebuild_all_rebuilds_every_projection_with_read_models(
    store: MessageStore, pool: asyncpg.Pool[Any], database_dsn: str
) -> None:
    await write_shop(store)
    assert (await worker(database_dsn, "run", "--until-caught-up", config=EXAMPLE_APP)).code == 0
    result = await worker(database_dsn, "rebuild", "--all", config=EXAMPLE_APP)
    assert result.code == 0, result
    assert "order_summary: live generation 2" in result.stdout, result
    assert "orders_by_status: live generation 2" in result.stdout, result
    assert "book_catalog: live generation 2" in result.stdout, result
    assert await pool.fetchval("SELECT count(*) FROM order_summary") == 2


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        ((), 2, "name one projection, or pass --all (not both)"),
        (("order_summary", "--all"), 2, "name one projection, or pass --all (not both)"),
        (
            ("nope",),
            2,
            "no projection named 'nope' (projections: book_catalog, order_summary, "
            "orders_by_status)",
        ),
    ],
)
async def test_rebuild_bad_input_is_one_line(
    database_dsn: str, args: tuple[str, ...], code: int, expected: str
) -> None:
    one_line(await worker(database_dsn, "rebuild", *args, config=EXAMPLE_APP), code, expected)


# -- start_from ---------------------------------------------------------------------------------


class Rang(BaseEvent):
    n: int


def bell_domain(heard: list[int]) -> Domain:
    domain = Domain("bells")
    domain.register_event(Rang, category="bell")

    @domain.event_handler(name="ringer", stream_categories=["bell"], start_from="head")
    class Ringer:
        @handle(Rang)
        async def rang(self, event: Rang, ctx: Context) -> None:
            heard.append(event.n)

    return domain


async def ring(store: MessageStore, *numbers: int) -> None:
    for n in numbers:
        await store.write("bell-1", Rang(n=n).to_message())


async def test_a_handler_starting_from_the_head_skips_history_once_then_resumes(
    store: MessageStore, database_dsn: str
) -> None:
    """A new handler declared with start_from="head" starts at its category's head the first
    time it runs; later runs resume from their position, missing nothing written between."""
    heard: list[int] = []
    domain = bell_domain(heard)
    await ring(store, 1, 2, 3)
    await Runner(domain, database_dsn, SETTINGS).run(until_caught_up=True, handle_signals=False)
    assert heard == []
    await ring(store, 4, 5)
    await Runner(domain, database_dsn, SETTINGS).run(until_caught_up=True, handle_signals=False)
    assert heard == [4, 5]
    await ring(store, 6)
    await Runner(domain, database_dsn, SETTINGS).run(until_caught_up=True, handle_signals=False)
    assert heard == [4, 5, 6]


def test_start_from_takes_origin_or_head() -> None:
    domain = Domain("bells")
    domain.register_event(Rang, category="bell")
    with pytest.raises(RegistrationError, match="start_from must be 'origin' or 'head'"):

        @domain.event_handler(stream_categories=["bell"], start_from="tail")  # type: ignore[arg-type]
        class Ringer:
            @handle(Rang)
            async def rang(self, event: Rang, ctx: Context) -> None: ...


async def test_status_shows_a_subscribers_concurrency(database_dsn: str) -> None:
    """`worker status` says how many partitions a consumer handles at once, when more than one:
    a field of the JSON, and beside the state in the table."""
    concurrent = {"COUNTER_CONCURRENCY": "8"}
    result = await worker(database_dsn, "status", "--json", config=FAULTS_APP, **concurrent)
    assert result.code == 0, result
    (row,) = json.loads(result.stdout)
    assert (row["consumer"], row["concurrency"]) == ("balances:counter", 8)
    table = await worker(database_dsn, "status", config=FAULTS_APP, **concurrent)
    assert table.code == 0 and "(x8)" in table.stdout, table
    plain = await worker(database_dsn, "status", config=FAULTS_APP)
    assert plain.code == 0 and "(x" not in plain.stdout, plain
    (row,) = json.loads((await worker(database_dsn, "status", "--json")).stdout)
    assert row["concurrency"] == 1
