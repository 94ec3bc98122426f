"""The generator's HTTP API against the real system (Redis, NATS, consumers)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from dev.local_system import LocalSystem


def call(
    system: LocalSystem,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    request = urllib.request.Request(system.base_url + path, data=body, method=method)
    for name, value in (headers or {"Content-Type": "application/json"}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            status, response_headers = response.status, response.headers
    except urllib.error.HTTPError as error:
        raw = error.read()
        status, response_headers = error.code, error.headers
    try:
        decoded = json.loads(raw)
    except ValueError:
        decoded = raw.decode(errors="replace")
    return status, response_headers, decoded


def wait_idle(system: LocalSystem) -> None:
    deadline = time.monotonic() + 60
    while system.status()["is_running"]:
        assert time.monotonic() < deadline, "a test is still running"
        time.sleep(0.2)


BAD_BODIES = [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b'"text"', None),
    (b'{"num_keys": -5}', "num_keys"),
    (b'{"num_keys": 0}', "num_keys"),
    (b'{"num_keys": 1e12}', "num_keys"),
    (b'{"num_keys": "100"}', "num_keys"),
    (b'{"num_keys": true}', "num_keys"),
    (b'{"num_keys": 2.5}', "num_keys"),
    (b'{"key_delay": -1}', "key_delay"),
    (b'{"key_ttl": 0}', "key_ttl"),
    (b'{"key_ttl": null}', "key_ttl"),
    (b'{"dedup_window": 999999999999}', "dedup_window"),
    (b'{"dedup_window": [5000]}', "dedup_window"),
    (b'{"keys": 10}', "keys"),
    (b"\xff\xfe", None),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_requests_get_400_naming_the_field_and_start_nothing(
    local_system: LocalSystem, body: bytes, field: str | None
) -> None:
    wait_idle(local_system)
    before = local_system.status()["test_id"]
    status, _, answer = call(local_system, "POST", "/api/start", body)
    assert status == 400
    assert isinstance(answer, dict) and answer["error"]
    if field:
        assert answer["field"] == field
        assert field in answer["error"]
    assert local_system.status()["test_id"] == before


def test_oversized_bodies_are_refused(local_system: LocalSystem) -> None:
    body = json.dumps({"num_keys": 10, "pad": "x" * 100_000}).encode()
    status, _, answer = call(local_system, "POST", "/api/start", body)
    assert status == 413
    assert "too large" in answer["error"]


def test_start_status_metrics_history_and_a_second_start(local_system: LocalSystem) -> None:
    wait_idle(local_system)
    status, _, started = call(
        local_system, "POST", "/api/start", b'{"num_keys": 3000, "key_delay": 1}'
    )
    assert status == 200 and started["status"] == "started"
    assert started["config"] == {
        "num_keys": 3000,
        "key_delay": 1,
        "key_ttl": 100,
        "dedup_window": 5000,
    }
    status, _, second = call(local_system, "POST", "/api/start", b"{}")
    assert status == 409 and "already running" in second["error"]
    current = local_system.status()
    assert current["is_running"] and current["test_id"] == started["test_id"]
    assert current["state"] in ("generating", "draining")
    time.sleep(1.5)
    status, _, stopped = call(local_system, "POST", "/api/stop", b"")
    assert status == 200 and stopped["status"] == "stopping"
    final = local_system.wait_test_end(timeout=60)
    assert final["state"] == "stopped"
    assert 0 < final["generated"] < 3000
    assert final["verdict"]["exactly_once"] is True
    assert final["verdict"]["expected"] == final["generated"]
    _, _, metrics = call(local_system, "GET", "/api/metrics")
    assert metrics["generated"] == metrics["consumed"] == final["generated"]
    assert sum(metrics["consumers"].values()) == final["generated"]
    _, _, history = call(local_system, "GET", "/api/history")
    assert history and {"t", "generated", "consumed", "generation_rate"} <= set(history[0])
    status, _, idle = call(local_system, "POST", "/api/stop", b"")
    assert (status, idle) == (200, {"status": "idle"})


def test_events_stream_pushes_status_every_second(local_system: LocalSystem) -> None:
    request = urllib.request.Request(local_system.base_url + "/api/events")
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = []
        while len(events) < 3:
            line = response.readline().decode()
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert time.monotonic() - started >= 1.0
    assert all({"is_running", "generated", "consumed", "progress"} <= set(e) for e in events)


def test_event_streams_refuse_other_origins(local_system: LocalSystem) -> None:
    status, _, answer = call(
        local_system, "GET", "/api/events", headers={"Origin": "http://evil.example"}
    )
    assert status == 403 and "cross-origin" in answer["error"]


def test_unknown_endpoints_and_methods_answer_json(local_system: LocalSystem) -> None:
    status, _, answer = call(local_system, "GET", "/api/nothing")
    assert status == 404 and answer["error"]
    status, _, answer = call(local_system, "GET", "/api/start")
    assert status == 405 and answer["error"]


def test_security_headers_and_health(local_system: LocalSystem) -> None:
    status, headers, _ = call(local_system, "GET", "/healthz")
    assert status == 200
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert call(local_system, "GET", "/readyz")[0] == 200
    status, headers, body = call(local_system, "GET", "/metrics")
    assert status == 200 and "expiry_pipeline_generated_keys_total" in body


def test_the_ui_is_served_with_cache_headers_for_hashed_assets(local_system: LocalSystem) -> None:
    status, headers, page = call(local_system, "GET", "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-cache"
    assets = sorted(set(re.findall(r'/assets/[^"]+', page)))
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        status, headers, _ = call(local_system, "GET", asset)
        assert status == 200
        assert "immutable" in headers["Cache-Control"]
        kinds = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        assert kinds[asset[asset.rindex(".") :]] in headers["Content-Type"]
    status, _, answer = call(local_system, "GET", "/assets/missing-0000.js")
    assert status == 404 and answer["error"]
    status, _, answer = call(local_system, "GET", "/../../etc/passwd")
    assert status == 404
