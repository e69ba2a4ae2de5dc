"""What the browser tests share: headless Chromium (Debian's, driven by Playwright), and
``worker run`` and ``worker console`` processes of the ledger application on the test's
database.

Without Chromium the browser tests are skipped, unless ``WORKER_BROWSER_CHECKS=required``
(CI), where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.console.conftest import LEDGER_CONFIG, TOKEN

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
# Screenshots of each page the tests saw (git-ignored).
ARTIFACTS = ROOT / "artifacts" / "console"
# Seconds a page may take to show what a test waits for.
WITHIN = 30.0


def unavailable(reason: str) -> None:
    """Skip a browser test that cannot run here, or fail it where WORKER_BROWSER_CHECKS=required."""
    if os.environ.get("WORKER_BROWSER_CHECKS") == "required":
        pytest.fail(f"{reason} (WORKER_BROWSER_CHECKS=required)")
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium from Debian (``apt-get install chromium``)."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


class Process:
    """A ``worker`` process of the ledger application, its output in a file."""

    def __init__(self, dsn: str, log_path: Path, *args: str, **env: str) -> None:
        environment = {**os.environ, "WORKER_EVENT_STORE__DATABASE_URI": dsn, **env}
        command = [sys.executable, "-m", "worker", "--config", str(LEDGER_CONFIG), *args]
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=ROOT
            )

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                found.append(entry)
        return found

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"\n--- {self.log_path.name} ---\n" + "\n".join(text)

    def logged(self, event: str, within: float = WITHIN) -> dict[str, Any]:
        """The first log line of ``event``, waiting for it (failing if the process exits)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = [e for e in self.events() if e.get("event") == event]
            if found:
                return found[0]
            assert self.process.poll() is None, f"exited {self.process.returncode}" + self.tail()
            time.sleep(0.05)  # the process writes its log on its own; nothing to wait on
        raise AssertionError(f"no {event!r} within {within} s" + self.tail())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def processes(dsn: str, log_dir: Path) -> Iterator[Starter]:
    """Starts worker and console processes; stops every one at the end."""
    starter = Starter(dsn, log_dir)
    try:
        yield starter
    finally:
        for process in starter.started:
            process.stop()


class Starter:
    def __init__(self, dsn: str, log_dir: Path) -> None:
        self.dsn = dsn
        self.log_dir = log_dir
        self.started: list[Process] = []

    def _start(self, name: str, *args: str, **env: str) -> Process:
        log = self.log_dir / f"{name}-{len(self.started)}.log"
        process = Process(self.dsn, log, *args, **env)
        self.started.append(process)
        return process

    def worker(self) -> Process:
        """``worker run``."""
        return self._start("worker", "run")

    def console(self, *args: str) -> str:
        """``worker console --port 0 ARGS`` with the tests' token; its URL once it listens."""
        process = self._start(
            "console",
            "console",
            "--port",
            "0",
            *args,
            WORKER_CONSOLE__TOKEN=TOKEN,
            WORKER_CONSOLE__OPERATOR="browser-test",
            WORKER_CONSOLE__REFRESH="0.3",
        )
        url: str = process.logged("console listening")["url"]
        return url.rstrip("/")
