"""Two roles: the owner installs (MessageDB, the worker schema, read-model tables, setups), and
the runtime role of `worker db grant` runs the whole engine with DML only, creating nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest

from tests.cli import EXAMPLE_APP, as_user, worker
from tests.integration.test_engine import FAST
from worker import BaseEvent, Context, Domain, Increment, ReadModel, Runner, handle, on
from worker.engine import pauses
from worker.engine.dead_letters import PostgresParkedMessages
from worker.engine.rebuild import rebuild
from worker.ops.install import grant_role, install_application
from worker.ops.settings import Settings
from worker.store.database import create_pool

if TYPE_CHECKING:
    from worker import MessageStore

pytestmark = pytest.mark.anyio

PASSWORD = "pw-runtime-7"


class Scored(BaseEvent):
    player: str
    points: int


class Cheered(BaseEvent):
    player: str


class Score(ReadModel):
    __table__ = "scores"
    __key__ = "player"
    player: str
    points: int = 0


def game_domain(broken: set[int]) -> Domain:
    """A projector with a read model (failing on points in ``broken``, parked at once), one with
    its own table made in ``setup`` (with a sequence), and a handler that writes messages."""
    domain = Domain("game")
    domain.register_event(Scored, category="game")
    domain.register_event(Cheered, category="cheer")

    @domain.projector(
        name="scores", stream_categories=["game"], read_models=[Score], max_attempts=1
    )
    class Scores:
        @on(Scored)
        def scored(self, event: Scored, ctx: Context) -> None:
            if event.points in broken:
                raise RuntimeError(f"cannot score {event.points}")
            ctx.table(Score).add(event.player, points=Increment(event.points))

    @domain.projector(name="plays", stream_categories=["game"])
    class Plays:
        async def setup(self, conn: Any) -> None:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS plays (seq bigserial PRIMARY KEY, player text)"
            )

        @on(Scored)
        async def scored(self, event: Scored, ctx: Context) -> None:
            await ctx.conn.execute("INSERT INTO plays (player) VALUES ($1)", event.player)

    @domain.event_handler(name="cheers", stream_categories=["game"])
    class Cheers:
        @handle(Scored)
        async def scored(self, event: Scored, ctx: Context) -> None:
            await ctx.write(f"cheer-{event.player}", Cheered(player=event.player))

    return domain


async def score(store: MessageStore, player: str, *points: int) -> None:
    for value in points:
        await store.write(f"game-{player}", Scored(player=player, points=value).to_message())


async def scores(pool: Any) -> dict[str, int]:
    return {r[0]: r[1] for r in await pool.fetch("SELECT player, points FROM scores")}


async def until(condition: Any, within: float = 15) -> None:
    with anyio.fail_after(within):
        while not await condition():
            await anyio.sleep(0.02)


# Every kind of change to the database's structure; each must be refused to the runtime role.
FORBIDDEN = (
    "CREATE TABLE public.intruder (a int)",
    "CREATE TABLE worker.intruder (a int)",
    "CREATE TABLE message_store.intruder (a int)",
    "CREATE SCHEMA intruder",
    "CREATE VIEW public.intruder AS SELECT 1",
    "CREATE FUNCTION public.intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE INDEX ON scores__g1 (points)",
    "CREATE TRIGGER intruder AFTER INSERT ON message_store.messages "
    "FOR EACH ROW EXECUTE FUNCTION worker.notify_message()",
    "ALTER TABLE scores__g1 ADD COLUMN intruder int",
    "ALTER TABLE plays ADD COLUMN intruder int",
    "ALTER TABLE worker.positions ADD COLUMN intruder int",
    "ALTER TABLE message_store.messages ADD COLUMN intruder int",
    "ALTER VIEW scores RENAME TO intruder",
    "DROP TABLE scores__g1",
    "DROP TABLE plays",
    "DROP VIEW scores",
    "DROP TABLE worker.positions",
    "DROP TABLE message_store.messages",
    "DROP SCHEMA worker CASCADE",
    "DROP FUNCTION message_store.write_message",
    "TRUNCATE scores__g1",
    "TRUNCATE worker.positions",
)


async def test_the_whole_engine_runs_as_the_runtime_role_which_can_change_no_structure(
    store: MessageStore, pool: Any, database_dsn: str, role: str
) -> None:
    """After the owner's install and `worker db grant`, the runtime role catches up, handles
    live events (with wake-ups), parks a failing message and replays it, pauses and resumes a
    consumer, writes messages and every kind of table; yet it may not create, alter, drop or
    truncate anything, and owns nothing."""
    broken = {13}
    domain = game_domain(broken)
    settings = Settings()
    await install_application(settings, domain, database_dsn)
    granted = await grant_role(settings, domain, database_dsn, role)
    assert set(granted.relations) >= {"public.scores__g1", "public.scores", "public.plays"}
    assert not granted.excess
    runtime = as_user(database_dsn, role, PASSWORD)

    await score(store, "ada", 1, 13, 2)
    await score(store, "bo", 5)
    result = await Runner(domain, runtime, FAST).run(until_caught_up=True, handle_signals=False)
    assert not result.stopped and not result.needs_rebuild
    assert await scores(pool) == {"ada": 1, "bo": 5}  # ada's 13 parked, her 2 behind it
    assert await pool.fetchval("SELECT count(*) FROM plays") == 4
    assert await store.category_head("cheer") is not None
    parked = await PostgresParkedMessages(pool).listing("scores:game", "game-ada")
    assert [row["error"] for row in parked] == ["cannot score 13", None]

    runner = Runner(domain, runtime, FAST)
    runtime_pool = await create_pool(runtime)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: runner.run(handle_signals=False))
            await score(store, "bo", 7)
            await until(lambda: _equals(scores(pool), {"ada": 1, "bo": 12}))
            broken.clear()
            assert (
                await PostgresParkedMessages(runtime_pool).request_replay("scores:game", "game-ada")
                == 2
            )
            await until(lambda: _equals(scores(pool), {"ada": 16, "bo": 12}))
            assert await PostgresParkedMessages(pool).listing("scores:game") == []
            scores_consumer = next(c for c in runner.result.consumers if c.name == "scores:game")
            assert await pauses.pause(runtime_pool, ["scores:game"], "test") == ["scores:game"]
            await until(lambda: _true(scores_consumer.state == "paused"))
            assert await pauses.resume(runtime_pool, ["scores:game"]) == ["scores:game"]
            await score(store, "bo", 1)
            await until(lambda: _equals(scores(pool), {"ada": 16, "bo": 13}))
            runner.request_stop()
    finally:
        await runtime_pool.close()
    assert await pool.fetchval("SELECT count(*) FROM plays") == 6
    cheers = await pool.fetchval(
        "SELECT count(*) FROM message_store.messages WHERE stream_name LIKE 'cheer-%'"
    )
    assert cheers == 6

    conn = await asyncpg.connect(runtime)
    try:
        for statement in FORBIDDEN:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        assert await conn.fetchval(_OWNED) == 0
        assert await conn.fetchval(_CREATE_ANYWHERE) == []
    finally:
        await conn.close()


async def _equals(got: Any, expected: Any) -> bool:
    return bool(await got == expected)


async def _true(value: bool) -> bool:
    return value


# Relations, schemas and functions the connected role owns.
_OWNED = """
SELECT (SELECT count(*) FROM pg_class WHERE relowner = current_user::regrole)
     + (SELECT count(*) FROM pg_namespace WHERE nspowner = current_user::regrole)
     + (SELECT count(*) FROM pg_proc WHERE proowner = current_user::regrole)
"""

# Where the connected role may create anything: the database, or any schema.
_CREATE_ANYWHERE = """
SELECT coalesce(array_agg(name ORDER BY name), '{}') FROM (
    SELECT 'database ' || current_database() AS name
    WHERE has_database_privilege(current_database(), 'CREATE')
    UNION ALL
    SELECT 'schema ' || nspname FROM pg_namespace WHERE has_schema_privilege(oid, 'CREATE')
) AS found
"""


async def test_db_grant_answers_bad_input_in_one_line(database_dsn: str, role: str) -> None:
    """`worker db grant` of an unknown role, or of the owner itself, exits 2 with one line; a
    grant is idempotent and says what it gave."""
    unknown = await worker(database_dsn, "db", "grant", "wt_nobody_at_all")
    assert unknown.code == 2, unknown
    assert unknown.errors == [
        'worker: error: role "wt_nobody_at_all" does not exist: create it first '
        "(CREATE ROLE \"wt_nobody_at_all\" LOGIN PASSWORD '...'), then grant"
    ], unknown
    itself = await worker(database_dsn, "db", "grant", "postgres")
    assert itself.code == 2, itself
    assert len(itself.errors) == 1 and "is the one connected (the owner)" in itself.errors[0]
    for _ in range(2):
        done = await worker(database_dsn, "db", "grant", role)
        assert done.code == 0, done
        assert f'granted role "{role}" what `worker run` needs' in done.stdout, done
    missing = await worker(database_dsn, "db", "grant", role, "extra")
    assert missing.code == 2, missing


async def test_grant_names_create_rights_the_role_already_held(
    database_dsn: str, role: str
) -> None:
    """A role that was given CREATE by hand before is told which of its rights go beyond what
    `worker run` needs (the grant takes nothing away)."""
    conn = await asyncpg.connect(database_dsn)
    try:
        await conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    finally:
        await conn.close()
    done = await worker(database_dsn, "db", "grant", role)
    assert done.code == 0, done
    assert f'note: role "{role}" also holds CREATE on schema public' in done.stdout, done


async def test_a_blue_green_rebuild_by_the_owner_hands_its_tables_to_a_running_runtime_worker(
    store: MessageStore, pool: Any, database_dsn: str, role: str
) -> None:
    """The owner's blue/green rebuild creates the next generation's tables and grants them to
    the recorded runtime role, so the runtime worker carries on writing them after the switch."""
    domain = game_domain(set())
    settings = Settings()
    await install_application(settings, domain, database_dsn)
    await grant_role(settings, domain, database_dsn, role)
    runtime = as_user(database_dsn, role, PASSWORD)
    await score(store, "ada", 1, 2)
    runner = Runner(domain, runtime, FAST, only=["scores"])
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        await until(lambda: _equals(scores(pool), {"ada": 3}))
        outcome = await rebuild(database_dsn, pool, FAST, domain.subscribers[0])
        assert outcome.generation == 2
        await score(store, "ada", 4)
        await until(lambda: _equals(scores(pool), {"ada": 7}))
        assert await pool.fetchval("SELECT sum(points) FROM scores__g2") == 7
        runner.request_stop()


async def test_example_app_installs_and_runs_as_the_runtime_role(
    database_dsn: str, role: str
) -> None:
    """The example application: `worker db install` makes every read model's tables and views,
    `worker db grant` gives the runtime role its rights, and `worker run` as that role projects
    and reports no lag."""
    for args in (("db", "install"), ("db", "grant", role)):
        done = await worker(database_dsn, *args, config=EXAMPLE_APP)
        assert done.code == 0, done
    runtime = as_user(database_dsn, role, PASSWORD)
    ran = await worker(runtime, "run", "--until-caught-up", config=EXAMPLE_APP)
    assert ran.code == 0, ran
    status = await worker(runtime, "status", "--json", config=EXAMPLE_APP)
    assert status.code == 0, status
