"""The WebUI in Chromium against the real generator, consumers, Redis and NATS."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from .conftest import OUTPUT, PageProblems, api

pytestmark = pytest.mark.browser

# Generous: these wait on a real pipeline on a 2-core machine, not on the UI.
FINISH_TIMEOUT_MS = 120_000
UPDATE_TIMEOUT_MS = 15_000


def expect(*args: Any, **kwargs: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(*args, **kwargs)


def fill_config(page: Any, **values: int) -> None:
    for name, value in values.items():
        field = page.get_by_test_id(f"input-{name}")
        field.fill(str(value))


def test_small_test_is_consumed_exactly_once(page: Any, idle_system: Any) -> None:
    page.goto("/")
    expect(page.get_by_test_id("connection")).to_have_attribute(
        "data-state", "open", timeout=UPDATE_TIMEOUT_MS
    )
    start = page.get_by_test_id("start")
    expect(start).to_be_enabled()
    expect(page.get_by_test_id("stop")).to_be_disabled()

    # Found by their labels, started with Enter: the form works from the keyboard.
    page.get_by_label("Number of keys").fill("300")
    page.get_by_label("Delay per key").fill("1")
    page.get_by_label("Key TTL").fill("100")
    page.get_by_label("Dedup window").fill("5000")
    page.get_by_label("Dedup window").press("Enter")

    expect(start).to_be_disabled(timeout=UPDATE_TIMEOUT_MS)
    progress = page.get_by_role("progressbar")
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=FINISH_TIMEOUT_MS)
    expect(page.get_by_test_id("progress-text")).to_have_text("100.0 %")
    verdict = page.get_by_test_id("verdict")
    expect(verdict).to_have_attribute("data-verdict", "exactly-once", timeout=FINISH_TIMEOUT_MS)
    expect(verdict).to_have_attribute("aria-live", "polite")
    expect(verdict).to_contain_text("Every key was consumed exactly once")
    expect(verdict).to_contain_text("300 consumed of 300 keys generated")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "finished")
    expect(page.get_by_test_id("consumed")).to_have_text("300")
    expect(page.get_by_test_id("in-flight")).to_have_text("0")
    expect(start).to_be_enabled()
    expect(page.get_by_test_id("stop")).to_be_disabled()

    bars = page.get_by_test_id("consumer-bar")
    expect(bars.first).to_be_visible()
    counts = [int(bar.get_attribute("data-count") or "0") for bar in bars.all()]
    assert sum(counts) == 300
    expect(page.get_by_test_id("latency-p50")).to_have_text(re.compile(r"\d"))
    assert int(page.get_by_test_id("rate-chart").get_attribute("data-samples") or "0") >= 1

    OUTPUT.mkdir(exist_ok=True)
    page.wait_for_timeout(1_000)  # the progress bar eases to its width over 0.7 s
    page.screenshot(path=str(OUTPUT / "ui-finished.png"), full_page=True)


def test_stop_mid_test_ends_in_stopped_with_a_verdict(page: Any, idle_system: Any) -> None:
    page.goto("/")
    expect(page.get_by_test_id("start")).to_be_enabled(timeout=UPDATE_TIMEOUT_MS)
    fill_config(page, num_keys=200_000, key_delay=1)
    page.get_by_test_id("start").click()

    status = page.get_by_test_id("status")
    expect(status).to_have_attribute("data-state", "generating", timeout=UPDATE_TIMEOUT_MS)
    expect(page.get_by_test_id("generated")).not_to_have_text("0", timeout=UPDATE_TIMEOUT_MS)
    stop = page.get_by_test_id("stop")
    expect(stop).to_be_enabled()
    stop.click()

    expect(status).to_have_attribute("data-state", "stopped", timeout=FINISH_TIMEOUT_MS)
    verdict = page.get_by_test_id("verdict")
    expect(verdict).not_to_have_attribute("data-verdict", "pending", timeout=UPDATE_TIMEOUT_MS)
    expect(verdict).to_contain_text("stopped early")
    expect(verdict).to_have_attribute("data-verdict", "exactly-once")
    expect(page.get_by_test_id("start")).to_be_enabled()
    expect(stop).to_be_disabled()
    generated = int(page.get_by_test_id("generated").inner_text().replace(",", ""))
    assert 0 < generated < 200_000


def test_reload_mid_test_picks_up_the_running_test(page: Any, idle_system: Any) -> None:
    page.goto("/")
    expect(page.get_by_test_id("start")).to_be_enabled(timeout=UPDATE_TIMEOUT_MS)
    fill_config(page, num_keys=200_000, key_delay=1, key_ttl=150)
    page.get_by_test_id("start").click()
    expect(page.get_by_test_id("status")).to_have_attribute(
        "data-state", "generating", timeout=UPDATE_TIMEOUT_MS
    )
    test_id = page.get_by_test_id("test-id").inner_text()
    # Let the history hold a few samples for the chart to be seeded from.
    page.wait_for_timeout(2_500)

    page.reload()
    expect(page.get_by_test_id("stop")).to_be_enabled(timeout=UPDATE_TIMEOUT_MS)
    expect(page.get_by_test_id("start")).to_be_disabled()
    expect(page.get_by_test_id("test-id")).to_have_text(test_id)
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "generating")
    num_keys = page.get_by_test_id("input-num_keys")
    expect(num_keys).to_have_value("200000")
    expect(num_keys).to_be_disabled()
    expect(page.get_by_test_id("input-key_ttl")).to_have_value("150")
    # Seeded from /api/history at once, not only from events arriving after the reload.
    expect(page.get_by_test_id("rate-chart")).not_to_have_attribute(
        "data-samples", re.compile(r"^[01]$")
    )
    generated_before = int(page.get_by_test_id("generated").inner_text().replace(",", ""))
    expect(page.get_by_test_id("generated")).not_to_have_text(
        f"{generated_before:,}", timeout=UPDATE_TIMEOUT_MS
    )

    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("status")).to_have_attribute(
        "data-state", "stopped", timeout=FINISH_TIMEOUT_MS
    )


def test_invalid_values_are_shown_next_to_their_field(
    page: Any, idle_system: Any, problems: PageProblems
) -> None:
    problems.allow("status of 400")  # Chromium logs the rejected request it is shown
    page.goto("/")
    expect(page.get_by_test_id("start")).to_be_enabled(timeout=UPDATE_TIMEOUT_MS)
    before = api(idle_system.base_url, "GET", "/api/status")["test_id"]

    fill_config(page, num_keys=-5)
    page.get_by_test_id("start").click()
    error = page.get_by_test_id("error-num_keys")
    expect(error).to_have_text("Must be from 1 to 1,000,000 keys.")
    num_keys = page.get_by_test_id("input-num_keys")
    expect(num_keys).to_have_attribute("aria-invalid", "true")
    expect(num_keys).to_be_focused()

    num_keys.fill("2.5")
    expect(error).to_have_text(re.compile("whole number"))
    fill_config(page, num_keys=10)
    expect(error).to_have_count(0)

    # Every value the form lets through is valid for the server too, so to see how the page
    # shows the server's own 400 the request is altered on its way to the real generator.
    def send_ttl_zero(route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        route.continue_(post_data=json.dumps({**body, "key_ttl": 0}))

    page.route("**/api/start", send_ttl_zero)
    page.get_by_test_id("start").click()
    server_error = page.get_by_test_id("error-key_ttl")
    expect(server_error).to_be_visible(timeout=UPDATE_TIMEOUT_MS)
    expect(server_error).not_to_be_empty()
    expect(page.get_by_test_id("form-error")).to_have_count(0)
    assert api(idle_system.base_url, "GET", "/api/status")["test_id"] == before
    expect(page.get_by_test_id("start")).to_be_enabled()


def test_connection_indicator_reports_an_unreachable_generator(
    page: Any, idle_system: Any, problems: PageProblems
) -> None:
    # The event stream fails as if the generator were down; the page must say so, then
    # reconnect on its own once the stream is reachable again.
    problems.allow("net::ERR_FAILED")
    page.route("**/api/events", lambda route: route.abort())
    page.goto("/")
    indicator = page.get_by_test_id("connection")
    expect(indicator).to_have_attribute("data-state", "unreachable", timeout=UPDATE_TIMEOUT_MS)
    expect(indicator).to_contain_text("unreachable")

    page.unroute("**/api/events")
    expect(indicator).to_have_attribute("data-state", "open", timeout=UPDATE_TIMEOUT_MS)
    expect(indicator).to_have_text("Live")


def test_phone_width_has_no_horizontal_scroll(page: Any, idle_system: Any) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto("/")
    expect(page.get_by_test_id("connection")).to_have_attribute(
        "data-state", "open", timeout=UPDATE_TIMEOUT_MS
    )
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    for name in ("num_keys", "key_delay", "key_ttl", "dedup_window"):
        expect(page.get_by_test_id(f"input-{name}")).to_be_visible()
