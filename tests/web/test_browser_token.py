"""The WebUI against a generator that requires an API token for start and stop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dev.local_system import LocalSystem

from .conftest import PageProblems
from .test_browser import FINISH_TIMEOUT_MS, UPDATE_TIMEOUT_MS, expect

pytestmark = pytest.mark.browser

TOKEN = "s3cret-for-the-browser-test"


@pytest.fixture(scope="module")
def local_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    """A system of its own, with API_TOKEN set (one consumer is enough here)."""
    system = LocalSystem(
        tmp_path_factory.mktemp("token-system"), consumers=1, env={"API_TOKEN": TOKEN}
    ).start()
    yield system
    system.stop()


def test_token_is_asked_once_and_sent_as_bearer(
    page: Any, local_system: LocalSystem, problems: PageProblems
) -> None:
    problems.allow("status of 401")  # Chromium logs each refused start
    authorizations: list[str | None] = []
    page.on(
        "request",
        lambda request: (
            request.method == "POST" and authorizations.append(request.headers.get("authorization"))
        ),
    )
    page.goto("/")
    start = page.get_by_test_id("start")
    expect(start).to_be_enabled(timeout=UPDATE_TIMEOUT_MS)
    page.get_by_test_id("input-num_keys").fill("50")
    start.click()

    form = page.get_by_test_id("token-form")
    expect(form).to_be_visible(timeout=UPDATE_TIMEOUT_MS)
    token_input = page.get_by_label("API token", exact=True)
    expect(token_input).to_be_focused()
    token_input.fill("wrong")
    token_input.press("Enter")
    expect(form).to_contain_text("rejected", timeout=UPDATE_TIMEOUT_MS)

    page.get_by_label("API token", exact=True).fill(TOKEN)
    page.get_by_test_id("token-submit").click()
    expect(form).to_have_count(0, timeout=UPDATE_TIMEOUT_MS)
    verdict = page.get_by_test_id("verdict")
    expect(verdict).to_have_attribute("data-verdict", "exactly-once", timeout=FINISH_TIMEOUT_MS)
    assert page.evaluate("sessionStorage.getItem('expiry-pipeline.api-token')") == TOKEN

    # After a reload the tab still has the token: no second prompt.
    page.reload()
    expect(start).to_be_enabled(timeout=UPDATE_TIMEOUT_MS)
    page.get_by_test_id("input-num_keys").fill("200000")
    start.click()
    stop = page.get_by_test_id("stop")
    expect(stop).to_be_enabled(timeout=UPDATE_TIMEOUT_MS)
    stop.click()
    expect(page.get_by_test_id("status")).to_have_attribute(
        "data-state", "stopped", timeout=FINISH_TIMEOUT_MS
    )
    expect(page.get_by_test_id("token-form")).to_have_count(0)

    bearer = f"Bearer {TOKEN}"
    assert authorizations == [None, "Bearer wrong", bearer, bearer, bearer]
