"""The `make run` demo in a real browser: Debian's headless Chromium, driven through the
DevTools protocol by Playwright, against the demo served by uvicorn on a free loopback
port, exactly as `make run` serves it.

It clicks each button and reads the answer from the page: the burst kept N of N with
sessionguard and fewer with `merge=False`; a damaged record gave a fresh session and a
log line; a logout in the middle of slow writes stood. It takes a screenshot each run
(under tmp_path); `make screenshot` runs it with SESSIONGUARD_SCREENSHOT set, which also
writes it to docs/demo.png for the README.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.servers import free_port, stop, wait_for_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "demo.png"
PAGE_TIMEOUT_MS = 30_000


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """The demo app on a free port, its sessions in tmp_path; its base URL."""
    port = free_port()
    log = tmp_path / "uvicorn.log"
    environment = {**os.environ, "SESSIONGUARD_DEMO_DIR": str(tmp_path / "sessions")}
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT), "examples.app:app"]
            + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=tmp_path,
        )
    try:
        wait_for_port(port, server, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)


@pytest.fixture
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium", "apt-get install chromium")
        raise AssertionError("unreachable")
    return found


def test_the_demo_shows_what_sessionguard_keeps(demo: str, chromium: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright  # the test group's browser driver

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1100})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(demo)

            page.click("#burst")
            page.wait_for_selector("#lww-result[data-kept]")
            guarded = page.locator("#guarded-result")
            lww = page.locator("#lww-result")
            assert guarded.get_attribute("data-kept") == guarded.get_attribute("data-sent")
            assert int(guarded.get_attribute("data-sent") or 0) == 24
            # The last writer won: most of the burst is lost (the README says "most").
            assert int(lww.get_attribute("data-kept") or 0) <= 12

            page.click("#damage")
            page.wait_for_selector("#damage-result[data-status]")
            damaged = page.locator("#damage-result")
            assert damaged.get_attribute("data-status") == "200"
            assert damaged.get_attribute("data-keys") == "0"  # reset: a fresh session
            assert "corrupt session record" in page.inner_text("#damage-log")

            page.click("#logout")
            page.wait_for_selector("#logout-result[data-keys]")
            assert page.locator("#logout-result").get_attribute("data-keys") == "0"

            shot = tmp_path / "demo.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("SESSIONGUARD_SCREENSHOT"):
                SCREENSHOT.parent.mkdir(exist_ok=True)
                shutil.copyfile(shot, SCREENSHOT)
        finally:
            browser.close()
