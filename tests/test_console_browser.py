"""The console in a real browser (issue #13): Debian's chromium driven by Playwright for Python
(``executable_path``; Playwright's own browser download cannot reach the internet here), against
``appendq serve``'s app under uvicorn, real Redis, a real PostgreSQL database and the simulator.

Sign in; the overview shows the seeded queued counts and updates itself; the charts draw; lead
search finds a lead and shows its timeline; an operator retries a held batch with a reason and
the batch's timeline shows the token's name; an auditor gets no button and a forged post is
refused. Every page at 1280 px and at 390 px: no error in the browser console, no sideways
scroll, and a screenshot saved under ``APPENDQ_TEST_ARTIFACTS`` (default ``artifacts/``).

Without chromium the module is skipped, saying so, unless ``APPENDQ_TEST_REQUIRE_BROWSER=1``
(``.ci/run`` sets it after installing chromium), which makes that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appendq.runtime import Runtime
from appendq.settings import Settings
from tests.support.console import (
    ASIDE,
    HALT_REASON,
    LEAD_PHONE,
    SECRETS,
    TARGET,
    Scene,
    records,
)
from tests.test_intake import serving

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("APPENDQ_TEST_CHROMIUM") or shutil.which("chromium") or ""
ARTIFACTS = Path(os.environ.get("APPENDQ_TEST_ARTIFACTS", "artifacts")) / "console"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}

if not CHROMIUM:
    if os.environ.get("APPENDQ_TEST_REQUIRE_BROWSER") == "1":
        raise RuntimeError("no chromium: apt-get install chromium (APPENDQ_TEST_REQUIRE_BROWSER=1)")
    pytest.skip("no chromium on this machine: apt-get install chromium", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield launched
        launched.close()


@pytest.fixture
def url(served: Settings, scene: Scene) -> Iterator[str]:
    with serving(served) as client:
        yield str(client.base_url).rstrip("/")


class Tab:
    """A browser page at one width that remembers every console error and uncaught exception."""

    def __init__(self, browser: Any, url: str, width: str) -> None:
        w, h = WIDTHS[width]
        self.context = browser.new_context(viewport={"width": w, "height": h})
        self.page = self.context.new_page()
        self.url, self.width = url, width
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def go(self, path: str) -> Any:
        self.page.goto(self.url + path)
        return self.page

    def sign_in(self, who: str) -> None:
        page = self.go("/ui/login")
        page.get_by_label("Token").fill(SECRETS[who])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r".*/ui/$"))

    def check(self, name: str) -> None:
        """No console error so far, no sideways scroll, and the page's screenshot."""
        page = self.page
        page.wait_for_load_state("networkidle")
        assert self.errors == [], f"{name} at {self.width}: {self.errors}"
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{name} at {self.width} scrolls sideways by {overflow} px"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{self.width}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tabs(browser: Any, url: str) -> Iterator[list[Tab]]:
    opened: list[Tab] = []
    yield opened
    for tab in opened:
        tab.close()


def open_tab(tabs: list[Tab], browser: Any, url: str, width: str) -> Tab:
    tab = Tab(browser, url, width)
    tabs.append(tab)
    return tab


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_every_page_signs_in_shows_the_scenario_and_has_no_console_error(
    browser: Any, url: str, scene: Scene, tabs: list[Tab], rt2: Runtime, width: str
) -> None:
    tab = open_tab(tabs, browser, url, width)
    tab.go("/ui/login")
    tab.check("login")
    tab.sign_in("ops")
    page = tab.page
    assert page.locator('[data-queued="acme"]').inner_text() == "5"
    assert page.locator('[data-queued="beta"]').inner_text() == "5"
    assert HALT_REASON in page.locator(".banner.halt").inner_text()
    page.locator('[data-chart="appended"][data-account="acme"] canvas').wait_for()
    summary = page.locator('[data-summary="appended"][data-account="acme"]')
    assert "3 records appended" in summary.inner_text()
    tab.check("overview")
    rt2.lane("acme").queue.push(TARGET, records(4, 100))  # the live part catches up by itself
    page.locator('[data-queued="acme"]', has_text="9").wait_for(timeout=15_000)
    tab.go("/ui/batches")
    tab.check("batches")
    tab.go(f"/ui/batches/{scene.appended}")
    assert "******0142" in page.content() and LEAD_PHONE not in page.content()
    tab.check("batch")
    tab.go("/ui/leads")
    page.get_by_label("Phone").fill("212-555-0142")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("status").filter(has_text="1 match").wait_for()
    timeline = page.locator("ol.timeline").inner_text()
    for step in ("queued", "sending", "appended"):
        assert step in timeline
    tab.check("leads")
    tab.go(f"/ui/retry?batch={scene.held}")
    tab.check("retry")
    tab.go(f"/ui/accounts/beta/clear?target={ASIDE}")
    tab.check("clear")
    tab.go("/ui/accounts/beta/resume")
    assert HALT_REASON in page.content()
    tab.check("resume")


def test_an_operator_retries_a_held_batch_and_the_timeline_names_the_token(
    browser: Any, url: str, scene: Scene, tabs: list[Tab]
) -> None:
    tab = open_tab(tabs, browser, url, "desktop")
    tab.sign_in("ops")
    page = tab.go(f"/ui/batches/{scene.held}")
    page.get_by_role("link", name=f"Retry batch {scene.held}").click()
    page.get_by_role("checkbox", name=f"Retry batch {scene.held}").wait_for()
    assert page.get_by_role("checkbox", name=f"Retry batch {scene.held}").is_checked()
    page.get_by_role("button", name="Confirm the retry").click()  # no reason: the browser says
    assert page.get_by_label(re.compile("^Reason")).evaluate("e => !e.validity.valid")
    page.get_by_label(re.compile("^Reason")).fill("beta's campaign is back: retry")
    page.get_by_role("button", name="Confirm the retry").click()
    page.get_by_role("status").filter(has_text="1 batch back to ready").wait_for()
    assert "console:ops" in page.get_by_role("status").inner_text()
    tab.check("retried")
    tab.go(f"/ui/batches/{scene.held}")
    row = page.locator("table.events tbody tr").last.inner_text()
    assert "console:ops" in row and "beta's campaign is back: retry" in row and "ready" in row
    assert tab.errors == []


def test_an_auditor_sees_no_action_and_a_forged_post_is_refused(
    browser: Any, url: str, scene: Scene, tabs: list[Tab], rt2: Runtime
) -> None:
    tab = open_tab(tabs, browser, url, "desktop")
    tab.sign_in("audit")
    page = tab.page
    assert page.get_by_role("link", name=re.compile("Resume account")).count() == 0
    tab.go(f"/ui/batches/{scene.held}")
    assert page.get_by_role("link", name=re.compile("Retry batch")).count() == 0
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    status = page.evaluate(
        """async ([csrf, id]) => (await fetch('/ui/retry', {
             method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'},
             body: new URLSearchParams({csrf, expect: id + ':held:0', reason: 'sneak'}),
           })).status""",
        [csrf, scene.held],
    )
    assert status == 403
    with rt2.sessions() as session:
        from appendq.db.models import Batch

        held = session.get(Batch, scene.held)
        assert held is not None and held.status == "held"
    page.goto(url + "/ui/retry?batch=1")
    assert "Operators only" in page.content()
    tab.errors.clear()  # the 403 pages above are the point; their console lines are expected


def test_the_keyboard_reaches_everything_from_the_skip_link(
    browser: Any, url: str, tabs: list[Tab]
) -> None:
    tab = open_tab(tabs, browser, url, "desktop")
    tab.sign_in("audit")
    page = tab.page
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.get_by_role("heading", level=1).inner_text() == "Overview"
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, button')]
             .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                          && !e.textContent.trim()).length"""
    )
    assert unnamed == 0
    before = page.locator("p.updated").inner_text()
    page.focus("#count-failed")  # a link of the live part: no refresh under the keyboard
    page.wait_for_timeout(6_500)  # past one refresh (every 5 s)
    assert page.evaluate("document.activeElement.id") == "count-failed"
    assert page.locator("p.updated").inner_text() == before
    page.evaluate("document.activeElement.blur()")  # focus elsewhere: it refreshes again
    page.wait_for_function(
        "t => document.querySelector('p.updated').textContent !== t", arg=before, timeout=8_000
    )
    assert tab.errors == []


def test_the_sign_in_page_says_why_an_intake_token_cannot_enter(
    browser: Any, url: str, tabs: list[Tab]
) -> None:
    tab = open_tab(tabs, browser, url, "phone")
    page = tab.go("/ui/login")
    page.get_by_label("Token").fill(SECRETS["crm"])
    page.get_by_role("button", name="Sign in").click()
    assert "intake token" in page.get_by_role("alert").inner_text()
    answer = httpx.get(url + "/ui/", follow_redirects=False)
    assert answer.status_code == 303
    tab.errors.clear()  # the refused sign-in answers 403: the browser logs it
