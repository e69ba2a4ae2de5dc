"""The console over HTTP (Starlette's test client, the real database): what its pages show,
and every guard in front of its actions."""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import pytest
from structlog.testing import capture_logs

from tests.console.conftest import CONSUMER, TOKEN, console_client, ledger_app
from tests.faults._support import connect
from worker import MessageStore, NewMessage, follow

if TYPE_CHECKING:
    from starlette.testclient import TestClient


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def error_line(response: Any) -> str:
    """The one line a page says went wrong (unescaped); the page's text when it says none."""
    found = re.search(r'id="error">([^<]*)<', response.text)
    return html.unescape(found.group(1) if found else response.text)


def sign_in(client: TestClient) -> str:
    """Sign the client's session in; the session's CSRF token."""
    token = csrf(client.get("/").text)
    signed = client.post("/signin", data={"csrf": token, "token": TOKEN})
    assert signed.status_code == 200, signed.text
    return token


async def _paused(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch("SELECT consumer FROM worker.paused")]
    finally:
        await conn.close()


def paused(dsn: str) -> list[str]:
    return anyio.run(_paused, dsn)


async def _park(dsn: str) -> None:
    """Write entries for accounts a and b, b poisoned, and run the worker until caught up:
    b's first entry is parked, its second held behind it."""
    conn = await connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS public.poison (account_id text PRIMARY KEY)")
        await conn.execute("INSERT INTO public.poison VALUES ('b')")
        store = MessageStore(conn)
        for account in ("a", "b", "b"):
            entry = {"account_id": account, "amount": 5, "note": "x" * 400}
            await store.write(f"ledger-{account}", NewMessage("Entered", entry))
    finally:
        await conn.close()
    await ledger_app(dsn).runner().run(until_caught_up=True)


def test_the_pages_show_consumers_parked_messages_and_projections(
    database_dsn: str,
) -> None:
    """Overview, parked messages and projections render what `worker status`, `dlq list` and
    `projections` report; a read-only console offers no action."""
    anyio.run(_park, database_dsn)
    for client in console_client(database_dsn, refresh=0.2):
        overview = client.get("/")
        assert overview.status_code == 200
        assert CONSUMER in overview.text and "MessageDB 1.3" in overview.text
        assert "read-only" in overview.text and "/actions/" not in overview.text
        parked = client.get("/parked").text
        assert "ledger-b" in parked and "RuntimeError: account b is poisoned" in parked
        assert "held behind #" in parked and "<details>" in parked  # long data folded away
        projections = client.get("/projections").text
        assert "ledger_totals" in projections and "/actions/" not in projections


def test_every_response_carries_a_strict_policy(read_only: TestClient) -> None:
    """No script but the console's own file, no framing, no inline script on any page."""
    for path in ("/", "/parked", "/projections", "/messages", "/static/console.js"):
        response = read_only.get(path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "'unsafe-inline'" not in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert re.search(r"<script(?![^>]*\bsrc=)", response.text) is None, path


def test_the_session_cookie_is_http_only_and_same_site(read_only: TestClient) -> None:
    cookie = read_only.get("/").headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_a_read_only_console_refuses_actions(database_dsn: str, read_only: TestClient) -> None:
    """Without --allow-actions, an action is refused whatever the form holds."""
    read_only.get("/")
    refused = read_only.post("/actions/pause", data={"csrf": "any", "name": CONSUMER})
    assert refused.status_code == 403
    assert "read-only (started without --allow-actions)" in error_line(refused)
    assert paused(database_dsn) == []


def test_an_action_needs_the_token(database_dsn: str, acting: TestClient) -> None:
    """Not signed in, or signed in with a wrong token: refused, nothing paused."""
    token = csrf(acting.get("/").text)
    refused = acting.post("/actions/pause", data={"csrf": token, "name": CONSUMER})
    assert refused.status_code == 403 and "sign in with the console's token" in error_line(refused)
    wrong = acting.post("/signin", data={"csrf": token, "token": "not-the-token"})
    assert wrong.status_code == 403 and "not the console's token" in error_line(wrong)
    again = acting.post("/actions/pause", data={"csrf": token, "name": CONSUMER})
    assert again.status_code == 403
    assert paused(database_dsn) == []


def test_a_signed_in_action_is_done_and_logged_without_the_token(
    database_dsn: str, acting: TestClient
) -> None:
    """Pause and resume through the engine's operations; each logs the operator and the
    remote address, and no log line or page holds the token."""
    with capture_logs() as logs:
        token = sign_in(acting)
        done = acting.post("/actions/pause", data={"csrf": token, "name": CONSUMER})
        assert done.status_code == 200 and f"{CONSUMER}: paused" in done.text
        assert paused(database_dsn) == [CONSUMER]
        resumed = acting.post("/actions/resume", data={"csrf": token, "name": CONSUMER})
        assert f"{CONSUMER}: resumed" in resumed.text
    assert paused(database_dsn) == []
    actions = [entry for entry in logs if entry["event"] == "console action"]
    assert [a["action"] for a in actions] == ["pause", "resume"]
    assert all(a["operator"] == "alice" and a["remote"] for a in actions)
    assert TOKEN not in str(logs) and TOKEN not in done.text


@pytest.mark.parametrize(
    "headers",
    [{"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"}, {"origin": "null"}],
)
def test_a_request_from_another_site_is_refused(
    database_dsn: str, acting: TestClient, headers: dict[str, str]
) -> None:
    token = sign_in(acting)
    refused = acting.post("/actions/pause", data={"csrf": token, "name": CONSUMER}, headers=headers)
    assert refused.status_code == 403 and "refused: a request from another" in error_line(refused)
    assert paused(database_dsn) == []


def test_a_form_without_the_session_csrf_token_is_refused(
    database_dsn: str, acting: TestClient
) -> None:
    sign_in(acting)
    for form in ({"name": CONSUMER}, {"name": CONSUMER, "csrf": "forged"}):
        refused = acting.post("/actions/pause", data=form)
        assert refused.status_code == 403 and "the form is stale" in error_line(refused)
    assert paused(database_dsn) == []


def test_actions_are_post_only(acting: TestClient) -> None:
    assert acting.get("/actions/pause").status_code == 405
    assert acting.get("/signin").status_code == 405


def test_a_discard_asks_first(database_dsn: str) -> None:
    """Discarding a stream shows a confirmation; only the confirmed form discards."""
    anyio.run(_park, database_dsn)
    for client in console_client(database_dsn, allow_actions=True, token=TOKEN):
        token = sign_in(client)
        form = {"csrf": token, "consumer": CONSUMER, "stream": "ledger-b"}
        asked = client.post("/actions/discard", data=form)
        assert asked.status_code == 200 and "Discard every parked message of ledger-b" in asked.text
        assert 'name="confirm" value="yes"' in asked.text
        assert "ledger-b" in client.get("/parked").text
        done = client.post("/actions/discard", data={**form, "confirm": "yes"})
        assert "discarded 2 parked message(s) of ledger-b" in done.text, done.text
        assert "no parked messages" in client.get("/parked").text


def test_a_reset_keeps_the_cli_bounds(database_dsn: str) -> None:
    """Beyond the category head without `force`: refused with the CLI's line."""
    anyio.run(_park, database_dsn)
    for client in console_client(database_dsn, allow_actions=True, token=TOKEN):
        token = sign_in(client)
        form = {"csrf": token, "consumer": CONSUMER, "to": "999", "confirm": "yes"}
        refused = client.post("/actions/reset", data=form)
        assert refused.status_code == 400
        assert "is beyond the head of category 'ledger'" in error_line(refused)


async def _runtime_role_without(dsn: str, role: str, table: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        from worker.store import privileges

        await privileges.grant(conn, role, ["public"])
        await conn.execute(f"REVOKE INSERT ON {table} FROM {role}")
    finally:
        await conn.close()


def test_an_action_the_role_may_not_do_is_refused_in_one_line(database_dsn: str, role: str) -> None:
    anyio.run(_runtime_role_without, database_dsn, role, "worker.paused")
    dsn = database_dsn.replace("postgres@", f"{role}@", 1)
    for client in console_client(dsn, allow_actions=True, token=TOKEN):
        token = sign_in(client)
        refused = client.post("/actions/pause", data={"csrf": token, "name": CONSUMER})
        assert refused.status_code == 403
        line = error_line(refused)
        assert f'pause: refused: role "{role}" lacks INSERT on table worker.paused' in line
    assert paused(database_dsn) == []


def test_no_page_shows_the_database_password(database_dsn: str) -> None:
    """A DSN with a password (trust authentication lets it through) never shows."""
    dsn = database_dsn.replace("postgres@", "postgres:pw-s3cret-991@", 1)
    for client in console_client(dsn, allow_actions=True, token=TOKEN):
        sign_in(client)
        for path in ("/", "/parked", "/projections"):
            text = client.get(path).text
            assert "pw-s3cret-991" not in text and TOKEN not in text, path


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_a_loopback_console_answers_to_loopback_names_only(database_dsn: str, host: str) -> None:
    """A page of another site whose name resolves to 127.0.0.1 (DNS rebinding) reads
    nothing: its requests carry its own name in Host."""
    from worker.ops.console.security import allowed_hosts

    for client in console_client(database_dsn, hosts=allowed_hosts(host)):
        assert client.get("/", headers={"host": "localhost:8800"}).status_code == 200
        assert client.get("/", headers={"host": "[::1]:8800"}).status_code == 200
        refused = client.get("/", headers={"host": "rebound.example:8800"})
        assert refused.status_code == 421, refused.text
        assert refused.text == "refused: this console answers to its loopback address only"
        assert "frame-ancestors 'none'" in refused.headers["content-security-policy"]
    assert allowed_hosts("0.0.0.0") == ()


async def _caused(dsn: str) -> tuple[int, int]:
    """An entry and a note it caused (Eventide's causation keys); their global positions."""
    conn = await connect(dsn)
    try:
        store = MessageStore(conn)
        entry = {"account_id": "a", "amount": 5, "note": "<script>alert(1)</script>"}
        await store.write("ledger-a", NewMessage("Entered", entry))
        cause = (await store.read_stream("ledger-a"))[0]
        await store.write("note-a", NewMessage("Noted", {"text": "seen"}, follow(cause)))
        note = (await store.read_stream("note-a"))[0]
        return cause.global_position, note.global_position
    finally:
        await conn.close()


def test_the_messages_page_lists_a_stream_and_a_category(
    database_dsn: str, read_only: TestClient
) -> None:
    """A stream's messages and a category's newest, each linking to the message's own page."""
    entry, note = anyio.run(_caused, database_dsn)
    stream = read_only.get("/messages", params={"stream": "ledger-a"}).text
    assert f'href="/messages?message={entry}"' in stream and "Entered" in stream
    assert f"?message={note}" not in stream
    category = read_only.get("/messages", params={"category": "note"}).text
    assert f'href="/messages?message={note}"' in category and "Noted" in category


def test_a_message_shows_its_data_escaped_and_its_causation_tree(
    database_dsn: str, read_only: TestClient
) -> None:
    """A message's page shows its data (escaped, never run), its schema versions, and the
    causation tree `worker events trace` builds: the note it caused one level below it."""
    entry, note = anyio.run(_caused, database_dsn)
    page = read_only.get("/messages", params={"message": str(entry)}).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "schema version: stored" in page
    assert re.search(rf'class="depth-0 focus" data-global="{entry}"', page), page
    assert re.search(rf'class="depth-1" data-global="{note}"', page), page
    from_note = read_only.get("/messages", params={"message": str(note)}).text
    assert re.search(rf'class="depth-0" data-global="{entry}"', from_note), from_note
    assert re.search(rf'class="depth-1 focus" data-global="{note}"', from_note), from_note


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ({"message": "abc"}, "is neither a global position"),
        ({"message": "987654"}, "no message at global position 987654"),
        ({"stream": "ledger-a", "from": "x"}, "from must be a whole number"),
        ({"category": "bad-category"}, "category"),
    ],
)
def test_the_messages_page_says_what_is_wrong_with_a_query(
    read_only: TestClient, query: dict[str, str], said: str
) -> None:
    """A malformed or unknown message, position or category is one line on the page."""
    response = read_only.get("/messages", params=query)
    assert response.status_code == 200
    found = re.search(r'id="problem">([^<]*)<', response.text)
    assert found is not None, response.text
    assert said in html.unescape(found.group(1))
