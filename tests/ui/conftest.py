"""Fixtures for the UI tests: Debian's Chromium driven by Playwright, a way to see failures, and
the process groups a test started, killed at its end.

Playwright's own browser download needs the internet, so the browser is the Debian package
(`make chromium`, which `make test` runs). Chromium's background services (update checks,
sync, field trials) would try to reach Google's hosts, which this closed network refuses,
so they are turned off; the profile is a fresh directory per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from iot_lake.app.dagster_ui import live_group_members

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root in CI, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    """A page in headless Chromium with a fresh profile, closed after the test."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` as root (Debian package chromium)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        # The UI answers slowly while runs take both cores.
        context.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@contextmanager
def screenshot_on_failure(page: Page, path: Path) -> Iterator[None]:
    """Save what the browser showed when an assertion inside the block failed."""
    try:
        yield
    except BaseException:
        page.screenshot(path=path, full_page=True)
        print(f"screenshot of the failure: {path}")
        raise


@pytest.fixture
def process_groups() -> Iterator[set[int]]:
    """Groups the test started; whatever of them still runs at teardown is killed."""
    groups: set[int] = set()
    yield groups
    for pgid in groups:
        for member in live_group_members(pgid):
            member.kill()
