"""A real browser for the status page: Playwright driving the system's chromium (Debian's
``chromium`` package; ``make test`` installs it when run as root). Without one these tests are
skipped, saying so. A failing test leaves a screenshot in ``chaos-artifacts/browser/``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

#: How long an ``expect`` on the page waits for it to come true (a deadline, not a measurement:
#: shared CI machines are slow at times).
expect.set_options(timeout=20_000)

#: Beside the chaos suite's artifacts (``tests/chaos/runner.py``).
SCREENSHOTS = Path("chaos-artifacts") / "browser"
#: Where the browser is looked for (``HACOORD_CHROMIUM`` names another).
CHROMIUM = os.environ.get("HACOORD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        pytest.skip("no chromium to drive (apt-get install chromium, or set HACOORD_CHROMIUM)")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start;
        # --disable-dev-shm-usage: containers often have a small /dev/shm.
        launched = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: object, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh tab (its own session storage). The members' certificates come from the test
    cluster's own CA, which this browser does not know: certificate errors are ignored here."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert errors == [], f"script errors on the page: {errors}"

