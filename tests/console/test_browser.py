"""The console in a real browser (headless Chromium) beside a running worker, on the real
database: what operators see change as the worker works, and what their actions do."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import pytest

from tests.console.browser import WITHIN, chromium, processes, screenshot
from tests.console.conftest import CONSUMER, TOKEN
from tests.faults._support import connect
from worker import MessageStore, NewMessage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from playwright.sync_api import Page

T = TypeVar("T")

# Playwright's assertions take milliseconds.
MS = WITHIN * 1000


def blocking(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` to its end in a thread of its own: Playwright's synchronous API keeps an
    event loop running in the test's thread."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(anyio.run, work).result()


def sql(dsn: str, statement: str, *args: Any) -> list[Any]:
    """Rows of ``statement`` on the test's database (a connection of the test's own)."""

    async def run() -> list[Any]:
        conn = await connect(dsn)
        try:
            return list(await conn.fetch(statement, *args))
        finally:
            await conn.close()

    return blocking(run)


def enter(dsn: str, *entries: tuple[str, int]) -> None:
    """Write ``Entered`` events, one per (account, amount)."""

    async def run() -> None:
        conn = await connect(dsn)
        try:
            store = MessageStore(conn)
            for account, amount in entries:
                entry = {"account_id": account, "amount": amount}
                await store.write(f"ledger-{account}", NewMessage("Entered", entry))
        finally:
            await conn.close()

    blocking(run)


def wait_for_rows(dsn: str, statement: str, what: str) -> None:
    """Wait (up to ``WITHIN`` seconds) until ``statement`` returns a row."""

    async def run() -> None:
        conn = await connect(dsn)
        try:
            with anyio.fail_after(WITHIN):
                while not await conn.fetch(statement):
                    await anyio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None
        finally:
            await conn.close()

    blocking(run)


def poison(dsn: str, *accounts: str) -> None:
    sql(dsn, "CREATE TABLE IF NOT EXISTS public.poison (account_id text PRIMARY KEY)")
    for account in accounts:
        sql(dsn, "INSERT INTO public.poison VALUES ($1)", account)


def row(page: Page, consumer: str = CONSUMER) -> Any:
    return page.locator(f'#consumers tr[data-consumer="{consumer}"]')


def sign_in(page: Page, token: str = TOKEN) -> None:
    from playwright.sync_api import expect

    page.locator("#signin input[name=token]").fill(token)
    page.locator("#signin button").click()
    expect(page.locator("#notice")).to_have_text("signed in: actions are enabled", timeout=MS)


def test_the_overview_shows_the_lag_going_to_zero_live(database_dsn: str, tmp_path: Path) -> None:
    """Entries written while no worker runs show as lag; once a worker runs, the open page
    (never reloaded) shows the consumer caught up, held by the worker's process."""
    from playwright.sync_api import expect

    with processes(database_dsn, tmp_path) as start, chromium() as browser:
        url = start.console()
        enter(database_dsn, *[(f"acc{n % 7}", n) for n in range(40)])
        page = browser.new_page()
        page.goto(url + "/")
        expect(row(page).locator("td.lag")).to_have_text("40", timeout=MS)
        expect(row(page).locator("td.state")).to_have_text("not running", timeout=MS)
        worker = start.worker()
        expect(row(page).locator("td.state")).to_have_text("caught up", timeout=MS)
        expect(row(page).locator("td.lag")).to_have_text("0", timeout=MS)
        holder = f":{worker.process.pid}"
        expect(page.locator("#processes")).to_contain_text(holder, timeout=MS)
        enter(database_dsn, *[("acc1", n) for n in range(10)])
        expect(row(page).locator("td.num").nth(1)).to_have_text("50", timeout=MS)  # the head
        expect(row(page).locator("td.lag")).to_have_text("0", timeout=MS)
        expect(row(page).locator("svg.spark polyline")).to_have_count(1, timeout=MS)
        assert page.url == url + "/"
        screenshot(page, "overview")


def test_a_poison_message_is_parked_and_replayed_after_the_fix(
    database_dsn: str, tmp_path: Path
) -> None:
    """A failing entry shows on the parked page with its error, the one held behind it and
    the data; once the handler no longer fails, replaying the stream empties the page and
    the read model holds every entry."""
    from playwright.sync_api import expect

    poison(database_dsn, "bad")
    with processes(database_dsn, tmp_path) as start, chromium() as browser:
        start.worker()
        url = start.console("--allow-actions")
        enter(database_dsn, ("good", 1), ("bad", 10), ("bad", 20), ("good", 2))
        wait_for_rows(database_dsn, "SELECT 1 FROM worker.dead_letters LIMIT 1", "a parked entry")
        page = browser.new_page()
        page.goto(url + "/parked")
        parked = page.locator('tr[data-stream="ledger-bad"]')
        expect(parked).to_have_count(2, timeout=MS)
        expect(parked.first).to_contain_text("RuntimeError: account bad is poisoned")
        expect(parked.nth(1)).to_contain_text("held behind #")
        expect(parked.first).to_contain_text('"amount": 10')
        screenshot(page, "parked")
        sign_in(page)
        page.goto(url + "/parked")
        sql(database_dsn, "DELETE FROM public.poison")  # the fix
        parked.first.get_by_role("button", name="replay stream").click()
        expect(page.locator("#notice")).to_contain_text(
            "replayed 2 message(s) of ledger-bad", timeout=MS
        )
        expect(page.locator("#none")).to_have_text("no parked messages", timeout=MS)
        screenshot(page, "parked-replayed")
    totals = sql(database_dsn, "SELECT account_id, total, entries FROM ledger_totals ORDER BY 1")
    assert [tuple(r) for r in totals] == [("bad", 30, 2), ("good", 3, 2)]


def test_pause_resume_and_a_rebuild_change_the_state_shown(
    database_dsn: str, tmp_path: Path
) -> None:
    """Pause shows the consumer paused, resume running again; a blue/green rebuild started on
    the projections page asks first, then the live generation moves on."""
    from playwright.sync_api import expect

    with processes(database_dsn, tmp_path) as start, chromium() as browser:
        start.worker()
        url = start.console("--allow-actions")
        enter(database_dsn, *[(f"acc{n % 5}", n) for n in range(30)])
        page = browser.new_page()
        page.goto(url + "/")
        expect(row(page).locator("td.state")).to_have_text("caught up", timeout=MS)
        sign_in(page)
        row(page).get_by_role("button", name="pause").click()
        expect(page.locator("#notice")).to_have_text(f"{CONSUMER}: paused", timeout=MS)
        expect(row(page).locator("td.state")).to_have_text("paused", timeout=MS)
        enter(database_dsn, ("acc9", 1))
        expect(row(page).locator("td.lag")).to_have_text("1", timeout=MS)
        screenshot(page, "overview-paused")
        row(page).get_by_role("button", name="resume").click()
        expect(page.locator("#notice")).to_have_text(f"{CONSUMER}: resumed", timeout=MS)
        expect(row(page).locator("td.state")).to_have_text("caught up", timeout=MS)
        expect(row(page).locator("td.lag")).to_have_text("0", timeout=MS)

        page.goto(url + "/projections")
        ledger = page.locator('section[data-projection="ledger"]')
        expect(ledger.locator(".live-generation")).to_have_text("g1", timeout=MS)
        ledger.get_by_role("button", name="rebuild ledger").click()
        expect(page.locator("#confirm")).to_contain_text("Rebuild ledger from position 0")
        page.get_by_role("button", name="Yes, rebuild").click()
        expect(page.locator("#notice")).to_contain_text("rebuild started", timeout=MS)
        expect(ledger.locator(".live-generation")).to_have_text("g2", timeout=MS)
        expect(ledger.locator(".progress")).to_contain_text("live generation 2", timeout=MS)
        screenshot(page, "projections")
    totals = sql(database_dsn, "SELECT sum(total)::int, sum(entries)::int FROM ledger_totals")
    assert tuple(totals[0]) == (sum(range(30)) + 1, 31)


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_an_action_without_the_token_is_refused(
    database_dsn: str, tmp_path: Path, token: str | None
) -> None:
    """Not signed in, or signed in with a wrong token, a pause is refused in one line and the
    consumer goes on."""
    from playwright.sync_api import expect

    with processes(database_dsn, tmp_path) as start, chromium() as browser:
        start.worker()
        url = start.console("--allow-actions")
        page = browser.new_page()
        page.goto(url + "/")
        if token is not None:
            page.locator("#signin input[name=token]").fill(token)
            page.locator("#signin button").click()
            expect(page.locator("#error")).to_have_text(
                "refused: that is not the console's token", timeout=MS
            )
        row(page).get_by_role("button", name="pause").click()
        expect(page.locator("#error")).to_have_text(
            "refused: sign in with the console's token first", timeout=MS
        )
        screenshot(page, "refused")
    assert sql(database_dsn, "SELECT consumer FROM worker.paused") == []
