"""What the fault tests share: worker processes, the deposits they project, and the checks.

Each ``worker run`` is a real process on the test's database, its log (JSON lines) captured to a
file so a failing assertion can show its tail. The read model is checked against two folds of
the same events: the one the test computed while writing them, and the one PostgreSQL computes
from ``message_store.messages`` up to the consumer's committed position.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg

from worker import MessageStore, NewMessage
from worker.store.database import init_connection

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable

    from anyio.abc import Process

APP_CONFIG = Path(__file__).resolve().parent / "app" / "domain.toml"
CATEGORY = "counter"
CONSUMER = "balances:counter"
RECEIPTS = "receipts:counter"  # the handler writing a receipt per deposit (COUNTER_RECEIPTS)

# Our own monitoring connections are named apart from the worker's ("worker"), so terminating
# the worker's backends never hits them.
TEST_SETTINGS = {"search_path": "public, message_store", "application_name": "fault-test"}

Row = tuple[int, int, int, int]  # total, events, last_seq, gaps


async def connect(dsn: str) -> asyncpg.Connection[Any]:
    """A monitoring connection (MessageDB's search path, JSON codecs, not named 'worker')."""
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn, server_settings=TEST_SETTINGS)
    await init_connection(conn)
    return conn


# -- the events --------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What was written, folded as the read model should fold it: account -> row."""

    accounts: dict[str, Row] = field(default_factory=dict)

    def deposit(self, account: str, amount: int) -> int:
        """Record a deposit; return its seq within the account."""
        total, events, _, _ = self.accounts.get(account, (0, 0, -1, 0))
        self.accounts[account] = (total + amount, events + 1, events, 0)
        return events

    @property
    def events(self) -> int:
        return sum(row[1] for row in self.accounts.values())


async def write_deposits(
    conn: asyncpg.Connection[Any],
    ledger: Ledger,
    rng: random.Random,
    *,
    accounts: int | list[int],
    per_account: int,
    chunk: int = 10,
) -> None:
    """Write ``per_account`` deposits into each account (``range(accounts)`` when a number),
    interleaving the accounts ``chunk`` deposits at a time, in one transaction."""
    store = MessageStore(conn)
    numbers = range(accounts) if isinstance(accounts, int) else accounts
    names = [f"acc{n:04d}" for n in numbers]
    async with conn.transaction():
        for start in range(0, per_account, chunk):
            for account in names:
                messages = []
                for _ in range(min(chunk, per_account - start)):
                    amount = rng.randint(1, 1000)
                    seq = ledger.deposit(account, amount)
                    data = {"account_id": account, "amount": amount, "seq": seq}
                    messages.append(NewMessage("Deposited", data))
                await store.write_batch(f"{CATEGORY}-{account}", messages, conn=conn)


# -- what the worker made of them ---------------------------------------------------------------

_FOLD = """
SELECT data->>'account_id', sum((data->>'amount')::bigint), count(*),
       max((data->>'seq')::int), 0
FROM message_store.messages
WHERE message_store.category(stream_name) = $1 AND global_position <= $2
GROUP BY 1
"""


async def read_model(conn: asyncpg.Connection[Any]) -> dict[str, Row]:
    """The ``balances`` table (empty until the worker created it)."""
    if await conn.fetchval("SELECT to_regclass('balances')") is None:
        return {}
    rows = await conn.fetch("SELECT account_id, total, events, last_seq, gaps FROM balances")
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


async def fold_upto(conn: asyncpg.Connection[Any], position: int) -> dict[str, Row]:
    """The read model the store's events up to global ``position`` should give."""
    rows = await conn.fetch(_FOLD, CATEGORY, position)
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


async def position(conn: asyncpg.Connection[Any], consumer: str = CONSUMER) -> int:
    """The consumer's committed position (0 before its first commit)."""
    value = await conn.fetchval(
        "SELECT position FROM worker.positions WHERE consumer = $1", consumer
    )
    return int(value or 0)


_DEPOSITS_UPTO = """
SELECT data->>'account_id', count(*) FROM message_store.messages
WHERE message_store.category(stream_name) = $1 AND global_position <= $2
GROUP BY 1
"""

_RECEIPTS = """
SELECT data->>'account_id', array_agg((data->>'seq')::int ORDER BY position)
FROM message_store.messages WHERE message_store.category(stream_name) = 'receipt'
GROUP BY 1
"""


async def receipts(conn: asyncpg.Connection[Any]) -> dict[str, list[int]]:
    """account -> the seqs of the deposits its receipts were written for, in stream order."""
    return {r[0]: list(r[1]) for r in await conn.fetch(_RECEIPTS)}


async def assert_receipts_consistent(conn: asyncpg.Connection[Any], *logs: WorkerProcess) -> int:
    """The receipts are exactly one per deposit up to the receipts' committed position, each
    account's in order of its deposits."""
    at = await position(conn, RECEIPTS)
    want = {r[0]: list(range(r[1])) for r in await conn.fetch(_DEPOSITS_UPTO, CATEGORY, at)}
    got = await receipts(conn)
    assert got == want, (
        f"receipts differ from the deposits up to {at}: " + _diff_lists(got, want) + tails(*logs)
    )
    return at


async def assert_receipts_exact(
    conn: asyncpg.Connection[Any], ledger: Ledger, *logs: WorkerProcess
) -> None:
    """One receipt per written deposit, in order; the receipts' position is the head."""
    want = {account: list(range(row[1])) for account, row in ledger.accounts.items()}
    got = await receipts(conn)
    assert got == want, (
        "receipts differ from the deposits: " + _diff_lists(got, want) + tails(*logs)
    )
    at, top = await position(conn, RECEIPTS), await head(conn)
    assert at == top, f"receipts position {at} != category head {top}" + tails(*logs)


def _diff_lists(got: dict[str, list[int]], want: dict[str, list[int]], limit: int = 5) -> str:
    keys = sorted(set(got) | set(want))
    bad = [(k, got.get(k), want.get(k)) for k in keys if got.get(k) != want.get(k)]
    shown = "; ".join(f"{k}: got {g} want {w}" for k, g, w in bad[:limit])
    return f"{len(bad)} of {len(keys)} accounts differ: {shown}"


async def head(conn: asyncpg.Connection[Any]) -> int:
    """The category's newest global position."""
    value = await MessageStore(conn).category_head(CATEGORY)
    assert value is not None, "no events were written"
    return value


async def caught_up(conn: asyncpg.Connection[Any], worker: WorkerProcess) -> None:
    """Wait until the running ``worker`` has committed the category head."""

    async def at_head() -> bool:
        worker.assert_running()
        return await position(conn) == await head(conn)

    await wait_until(at_head, 30, "the worker to reach the category head", worker)


async def open_batches(conn: asyncpg.Connection[Any]) -> int:
    """How many of the worker's backends are inside a transaction right now."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'worker' AND xact_start IS NOT NULL"
        )
    )


async def terminate_worker_backends(conn: asyncpg.Connection[Any], where: str = "true") -> int:
    """``pg_terminate_backend`` every worker backend (matching ``where``); how many."""
    rows = await conn.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        f"AND application_name = 'worker' AND ({where})"
    )
    return len(rows)


async def assert_consistent(conn: asyncpg.Connection[Any], *logs: WorkerProcess) -> int:
    """The read model is exactly the fold of the events up to the committed position."""
    at = await position(conn)
    got, want = await read_model(conn), await fold_upto(conn, at)
    problem = f"read model differs from the fold up to {at}: {diff(got, want)}"
    assert got == want, problem + tails(*logs)
    return at


async def assert_exact(conn: asyncpg.Connection[Any], ledger: Ledger, *logs: WorkerProcess) -> None:
    """Every written event applied exactly once, in order; the position is the category head."""
    got = await read_model(conn)
    problem = f"read model differs from the events written: {diff(got, ledger.accounts)}"
    assert got == ledger.accounts, problem + tails(*logs)
    at, top = await position(conn), await head(conn)
    assert at == top, f"position {at} != category head {top}" + tails(*logs)


def diff(got: dict[str, Row], want: dict[str, Row], limit: int = 5) -> str:
    """A short description of how two read models differ."""
    keys = sorted(set(got) | set(want))
    bad = [(k, got.get(k), want.get(k)) for k in keys if got.get(k) != want.get(k)]
    shown = "; ".join(f"{k}: got {g} want {w}" for k, g, w in bad[:limit])
    return f"{len(bad)} of {len(keys)} accounts differ (total, events, last_seq, gaps): {shown}"


# -- worker processes ---------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """A ``worker run`` process and the file its output goes to."""

    process: Process
    log_path: Path
    started_at: float

    @property
    def name(self) -> str:
        return self.log_path.stem

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def events(self) -> list[dict[str, Any]]:
        """The log's JSON lines so far (other lines, e.g. a traceback, are skipped)."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                found.append(entry)
        return found

    def logged(self, event: str) -> bool:
        return any(entry.get("event") == event for entry in self.events())

    def assert_running(self) -> None:
        assert self.returncode is None, f"{self.name} exited ({self.returncode})" + self.tail()

    def tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"\n--- last {len(text)} lines of {self.log_path} ---\n" + "\n".join(text)

    async def wait_logged(self, event: str, within: float = 20.0) -> None:
        """Wait until the log has ``event`` (failing if the process exits first)."""

        async def seen() -> bool:
            if self.logged(event):
                return True
            self.assert_running()
            return False

        await wait_until(seen, within, f"{self.name} to log {event!r}", self)

    async def kill(self) -> None:
        """SIGKILL, and reap."""
        if self.returncode is None:
            self.process.kill()
        await self.process.wait()

    async def stop(self, within: float) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took); fails if it takes longer than ``within``."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(within):
            code = await self.process.wait()
            return code, time.monotonic() - sent
        raise AssertionError(f"{self.name} still running {within}s after SIGTERM" + self.tail())


class Workers:
    """Starts ``worker run`` processes on one database; kills any still running at the end."""

    def __init__(
        self, dsn: str, log_dir: Path, *, config: Path = APP_CONFIG, **settings: object
    ) -> None:
        self.dsn = dsn
        self.log_dir = log_dir
        self.config = config
        self.settings = settings
        self.started: list[WorkerProcess] = []

    async def start(self, *args: str, **settings: object) -> WorkerProcess:
        """``worker --config <config> run *args`` with ``WORKER_WORKER__*`` (the config is
        ``tests/faults/app/domain.toml`` unless the ``Workers`` were given another)."""
        env = {**os.environ, "WORKER_EVENT_STORE__DATABASE_URI": self.dsn}
        for key, value in {**self.settings, **settings}.items():
            env[f"WORKER_WORKER__{key.upper()}"] = str(value)
        log_path = self.log_dir / f"worker-{len(self.started):02d}.log"
        command = [sys.executable, "-m", "worker", "--config", str(self.config), "run", *args]
        with log_path.open("wb") as log:
            process = await anyio.open_process(
                command, stdin=None, stdout=log, stderr=log, env=env, cwd=self.log_dir
            )
        worker = WorkerProcess(process, log_path, time.monotonic())
        self.started.append(worker)
        return worker

    async def run_until_caught_up(self, within: float = 60.0) -> WorkerProcess:
        """``worker run --until-caught-up`` to completion; it must exit 0."""
        worker = await self.start("--until-caught-up")
        with anyio.move_on_after(within):
            code = await worker.process.wait()
            assert code == 0, f"--until-caught-up exited {code}" + worker.tail()
            return worker
        raise AssertionError(f"--until-caught-up still running after {within}s" + worker.tail())

    async def kill_all(self) -> None:
        with anyio.CancelScope(shield=True):
            for worker in self.started:
                await worker.kill()


def tails(*workers: WorkerProcess) -> str:
    return "".join(worker.tail() for worker in workers)


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    within: float,
    what: str,
    *logs: WorkerProcess,
    interval: float = 0.02,
) -> None:
    """Poll ``condition`` until true; fail after ``within`` seconds saying what was awaited."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}" + tails(*logs))
        await anyio.sleep(interval)
