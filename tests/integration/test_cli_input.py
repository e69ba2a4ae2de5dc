"""What the command line answers to bad input (one line, exit 2, never a usage box), and what
it shows where there is no terminal: a rebuild's progress as plain lines, a pause's reason."""

from __future__ import annotations

import pytest

from tests.cli import FAULTS_APP, Result, worker

pytestmark = pytest.mark.anyio

TALLY_APP = FAULTS_APP.with_name("tally.toml")
KNOWN = "known: tallies:tally"


def one_line(result: Result, code: int, expected: str) -> None:
    assert result.code == code, result
    assert result.errors == [f"worker: error: {expected}"], result


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("reset", "tallies:tally", "--to", "abc"), "--to must be a whole number (0 or more)"),
        (("dlq", "show", "1;DROP"), "a parked message's id must be a whole number (0 or more)"),
        (("dlq", "replay", "abc"), "a parked message's id must be a whole number (0 or more)"),
        (("dlq", "discard", "3x"), "a parked message's id must be a whole number (0 or more)"),
    ],
)
async def test_a_number_that_is_not_one_is_one_line_and_exit_2(
    database_dsn: str, args: tuple[str, ...], expected: str
) -> None:
    """A position or a parked message's id that is not a whole number is refused in one line
    naming it, exit 2."""
    result = await worker(database_dsn, *args, config=TALLY_APP)
    one_line(result, 2, f"{expected}, got {args[-1]!r}")


@pytest.mark.parametrize(
    "args",
    [
        ("dlq", "list", "--consumer", "nope"),
        ("dlq", "discard", "--consumer", "nope", "--stream", "tally-a"),
        ("dlq", "replay", "--consumer", "nope", "--stream", "tally-a"),
    ],
)
async def test_dlq_with_an_unknown_consumer_exits_2_listing_the_known(
    database_dsn: str, args: tuple[str, ...]
) -> None:
    """`dlq list`, `discard` and `replay` with a consumer that is none of the domain's (and
    has nothing parked) say so in one line listing the known consumers, exit 2."""
    result = await worker(database_dsn, *args, config=TALLY_APP)
    one_line(result, 2, f"no consumer named 'nope'; {KNOWN}")


@pytest.mark.parametrize("command", ["replay", "discard"])
async def test_dlq_replay_or_discard_naming_nothing_is_a_usage_error(
    database_dsn: str, command: str
) -> None:
    """A bare `dlq replay` or `dlq discard` says what to give, exit 2."""
    result = await worker(database_dsn, "dlq", command, config=TALLY_APP)
    one_line(result, 2, "give a parked message id, or both --consumer and --stream")


async def test_status_shows_the_reason_a_consumer_was_paused(database_dsn: str) -> None:
    """`worker status` (the table, not only `--json`) shows the reason given to `pause`."""
    paused = await worker(
        database_dsn, "pause", "tallies", "--reason", "downstream outage", config=TALLY_APP
    )
    assert paused.code == 0, paused
    status = await worker(database_dsn, "status", config=TALLY_APP)
    assert status.code == 0, status
    assert "paused: downstream outage" in status.stdout, status


async def test_rebuild_in_a_pipe_prints_plain_progress_lines(database_dsn: str) -> None:
    """Off a terminal, `worker rebuild` prints its progress as whole lines (no bar to cut)."""
    installed = await worker(database_dsn, "db", "install", config=TALLY_APP)
    assert installed.code == 0, installed
    result = await worker(database_dsn, "rebuild", "tallies", config=TALLY_APP)
    assert result.code == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].startswith("rebuilding tallies: 0/0 messages (100%), 0 msg/s, "), result
    assert lines[1:] == ["tallies: live generation 2"], result


async def test_reset_without_to_resets_to_the_start(database_dsn: str) -> None:
    """`worker reset CONSUMER` with no `--to` takes the option's default, 0: the consumer starts
    again from the beginning (its default is not parsed as if typed)."""
    installed = await worker(database_dsn, "db", "install", config=TALLY_APP)
    assert installed.code == 0, installed
    result = await worker(database_dsn, "reset", "tallies:tally", config=TALLY_APP)
    assert result.code == 0, result
    status = await worker(database_dsn, "status", "--json", config=TALLY_APP)
    assert status.code == 0, status
    assert '"position": 0' in status.stdout, status
