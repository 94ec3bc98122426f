"""Chromium driven through Playwright against the real system (``local_system`` fixture).

Playwright never downloads a browser here: it drives the distribution's Chromium. Every page
opened through the ``page`` fixture fails its test on a console error, an uncaught exception
or a request to any host other than the generator.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUTPUT = REPO / "test-output"


@pytest.fixture(scope="session")
def web_build() -> Path:
    """The built UI: the generator serves web/dist, so a missing build means a blank page."""
    index = REPO / "web" / "dist" / "index.html"
    if not index.exists():
        pytest.fail("web/dist/index.html is missing: build the UI first with `make web`")
    return index


@pytest.fixture(scope="module")
def browser(web_build: Path) -> Iterator[Any]:
    if not CHROMIUM.exists():
        # On a developer's machine a missing browser skips; in CI it must not pass unnoticed.
        message = (
            "no Chromium at /usr/bin/chromium: run `make system-deps` (apt-get install chromium)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Imported here so that collecting the rest of the suite never needs Playwright.
    from playwright.sync_api import sync_playwright

    # trio-asyncio (imported by the trio tests of the same run) installs an event loop policy
    # whose loops cannot run Playwright's; give Playwright the standard one while it runs.
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()
    finally:
        asyncio.set_event_loop_policy(policy)


@dataclass
class PageProblems:
    """What went wrong in the page; tests may allow errors they provoke on purpose."""

    origin: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def allow(self, fragment: str) -> None:
        self.allowed.append(fragment)

    def unexpected(self) -> list[str]:
        errors = self.console_errors + self.page_errors
        return [e for e in errors if not any(a in e for a in self.allowed)]


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def problems(local_system: Any) -> PageProblems:
    return PageProblems(origin=origin_of(local_system.base_url))


@pytest.fixture
def page(browser: Any, local_system: Any, problems: PageProblems) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, base_url=local_system.base_url
    )
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.on("console", lambda msg: msg.type == "error" and problems.console_errors.append(msg.text))
    tab.on("pageerror", lambda exc: problems.page_errors.append(str(exc)))

    def check_request(request: Any) -> None:
        if (
            not request.url.startswith(("data:", "blob:"))
            and origin_of(request.url) != problems.origin
        ):
            problems.foreign_requests.append(request.url)

    tab.on("request", check_request)
    yield tab
    context.close()
    assert problems.foreign_requests == [], "the page reached hosts other than the generator"
    assert problems.unexpected() == [], "the browser console reported errors"


def api(base_url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One call to the generator's API, outside the browser, for setting the stage."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def idle_system(local_system: Any) -> Any:
    """The system with no test running, whatever the previous test left behind."""
    base_url = local_system.base_url
    if api(base_url, "GET", "/api/status")["is_running"]:
        api(base_url, "POST", "/api/stop", {})
    deadline = time.monotonic() + 120
    while api(base_url, "GET", "/api/status")["is_running"]:
        if time.monotonic() > deadline:
            pytest.fail("the previous test is still draining after 120 s")
        time.sleep(0.5)
    return local_system
