"""The entrypoints as processes: configuration errors, start-up checks, graceful stop."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dev.local_system import (
    NatsServer,
    Process,
    RedisServer,
    free_port,
    http_json,
    service_env,
    wait_until,
)
from tests.support import start_consumer


@pytest.mark.parametrize(
    ("module", "env", "variable"),
    [
        ("generator", {"PORT": "http"}, "PORT"),
        ("generator", {"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ("consumer", {"NATS_URL": "http://x"}, "NATS_URL"),
        ("consumer", {"CONSUMER_ID": "no spaces please"}, "CONSUMER_ID"),
        ("consumer", {"HEALTH_PORT": "-1"}, "HEALTH_PORT"),
        ("consumer", {"KEY_PATTERNS": "session:[0-9"}, "KEY_PATTERNS"),
        ("consumer", {"HANDLER": "no_such_module:handle"}, "HANDLER"),
        ("consumer", {"HANDLER": "json:dumps"}, "HANDLER"),
        ("consumer", {"HANDLER": "just-a-name"}, "HANDLER"),
        ("consumer", {"HANDLER_CONCURRENCY": "0"}, "HANDLER_CONCURRENCY"),
        ("consumer", {"DEDUP_WINDOW_MS": "soon"}, "DEDUP_WINDOW_MS"),
        ("consumer", {"FLEET": "Not A Name"}, "FLEET"),
        ("generator", {"REDIS_URL": "redis://localhost:6379/notanumber"}, "REDIS_URL"),
        ("consumer", {"REDIS_URL": "redis://localhost:6379/notanumber"}, "REDIS_URL"),
        ("generator", {"REDIS_URL": "redis://[::1/0"}, "REDIS_URL"),
        ("consumer", {"REDIS_URL": "redis://[::1/0"}, "REDIS_URL"),
        ("generator", {"HOST": "999.1.1.1"}, "HOST"),
        ("consumer", {"HEALTH_HOST": "not a host"}, "HEALTH_HOST"),
    ],
)
def test_a_bad_setting_stops_the_process_with_one_line_naming_it(
    module: str, env: dict[str, str], variable: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module],
        env=service_env(env),
        capture_output=True,
        timeout=30,
        text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0], result.stderr


@pytest.mark.parametrize(
    ("module", "env", "variable"),
    [
        ("generator", {"HOST": "127.0.0.1"}, "PORT"),
        ("consumer", {"HEALTH_HOST": "127.0.0.1"}, "HEALTH_PORT"),
        ("generator", {"HOST": "192.0.2.1"}, "HOST"),
    ],
)
def test_a_port_in_use_or_an_address_not_here_stops_the_process_with_one_line(
    module: str, env: dict[str, str], variable: str
) -> None:
    # Nothing answers on these: the process must fail on the port before it needs a server.
    servers = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    servers["NATS_URL"] = f"nats://127.0.0.1:{free_port()}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        ports = {"PORT": port, "HEALTH_PORT": port}
        result = subprocess.run(
            [sys.executable, "-m", module],
            env=service_env({**servers, **ports, **env}),
            capture_output=True,
            timeout=60,
            text=True,
        )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_consumer_drains_and_exits_0_on_sigterm(
    tmp_path: Path, redis_server: RedisServer, nats_server: NatsServer
) -> None:
    process, port = start_consumer(tmp_path, REDIS_URL=redis_server.url, NATS_URL=nats_server.url)
    try:
        wait_until(lambda: http_json(f"http://127.0.0.1:{port}/readyz")["ready"], 30, "consumer")
        process.signal(signal.SIGTERM)
        began = time.monotonic()
        assert process.popen is not None
        assert process.popen.wait(15) == 0, process.log_text()
        assert time.monotonic() - began < 8
        log = process.log_text()
        assert "stopping" in log and "stopped" in log
        assert "Traceback" not in log
    finally:
        process.kill()


def test_consumer_says_when_redis_announces_no_expirations(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    redis = RedisServer(tmp_path, keyspace_events="").start()
    process, _ = start_consumer(tmp_path, REDIS_URL=redis.url, NATS_URL=nats_server.url)
    try:
        wait_until(lambda: "notify-keyspace-events" in process.log_text(), 30, "the warning")
        assert "KEgx" in process.log_text()
    finally:
        process.stop()
        redis.stop()


def test_consumer_says_in_one_line_when_redis_tells_no_deadlines_and_runs_on(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    redis = RedisServer(tmp_path, keyspace_events="KEx").start()
    process, port = start_consumer(tmp_path, REDIS_URL=redis.url, NATS_URL=nats_server.url)
    try:
        wait_until(lambda: "without 'g'" in process.log_text(), 30, "the warning")
        lines = [line for line in process.log_text().splitlines() if "without 'g'" in line]
        assert len(lines) == 1 and "KEgx" in lines[0]
        wait_until(lambda: http_json(f"http://127.0.0.1:{port}/readyz")["ready"], 30, "ready")
    finally:
        process.stop()
        redis.stop()


def test_consumer_says_in_one_line_when_redis_has_no_functions(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    # Redis before 7.0 has no FUNCTION command; renaming it away gives the same Redis.
    redis = RedisServer(tmp_path, extra=["--rename-command", "FUNCTION", ""]).start()
    process, port = start_consumer(tmp_path, REDIS_URL=redis.url, NATS_URL=nats_server.url)
    try:
        wait_until(lambda: http_json(f"http://127.0.0.1:{port}/readyz")["ready"], 30, "consumer")
        lines = [line for line in process.log_text().splitlines() if "Functions" in line]
        assert len(lines) == 1 and "Redis 7.0 or later" in lines[0], process.log_text()
        assert "Traceback" not in process.log_text()
    finally:
        process.stop()
        redis.stop()


def test_consumer_waits_for_servers_that_are_not_up_yet(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path)
    nats = NatsServer(tmp_path)
    process, port = start_consumer(tmp_path, REDIS_URL=redis.url, NATS_URL=nats.url)
    try:
        wait_until(lambda: "retrying" in process.log_text(), 30, "a retry message")
        assert process.running
        redis.start()
        nats.start()
        wait_until(lambda: http_json(f"http://127.0.0.1:{port}/readyz")["ready"], 30, "consumer")
        assert process.stop() == 0
    finally:
        process.kill()
        nats.stop()
        redis.stop()


def start_generator(tmp_path: Path, redis: RedisServer, **env: str) -> tuple[Process, str]:
    """A generator process on a free port; returns it and its base URL once it is ready."""
    port = free_port()
    process = Process(
        "generator",
        [sys.executable, "-m", "generator"],
        tmp_path / "generator.log",
        env=service_env({"REDIS_URL": redis.url, "PORT": str(port), "HOST": "127.0.0.1", **env}),
    )
    process.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_json(f"{base}/readyz")["ready"], 30, "generator")
    except BaseException:
        process.kill()
        raise
    return process, base


def test_generator_without_a_built_ui_says_how_to_build_it(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    process, base = start_generator(
        tmp_path, redis_server, WEB_DIST=str(tmp_path / "no-build"), LOG_FORMAT="json"
    )
    try:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"{base}/", timeout=5)
        assert answer.value.code == 503
        page = answer.value.read().decode()
        assert "make web" in page and "npm run build" in page
        assert process.stop() == 0
        # LOG_FORMAT=json: every line is one JSON object.
        lines = process.log_text().strip().splitlines()
        entries = [json.loads(line) for line in lines]
        assert {"time", "level", "logger", "message"} <= set(entries[0])
        assert any("serving" in e["message"] for e in entries)
    finally:
        process.kill()


def test_generator_names_a_redis_outage_and_recovers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """While Redis is away the status says so (200, ``redis_problem``); what needs Redis
    answers 503 naming it; once Redis is back, all is as before, and the process never died."""
    process, base = start_generator(tmp_path, redis_server)
    try:
        redis_server.stop()
        status = http_json(f"{base}/api/status", timeout=30)
        assert status["redis_problem"]["cause"] == "unreachable", status
        assert "Redis" in status["redis_problem"]["message"]
        for method, path in (("POST", "/api/start"), ("GET", "/api/metrics")):
            with pytest.raises(urllib.error.HTTPError) as answer:
                http_json(base + path, method, {} if method == "POST" else None, timeout=30)
            assert answer.value.code == 503
            assert "Redis" in json.loads(answer.value.read())["error"]
        # Still ready: the page stays reachable to name the problem.
        ready = http_json(f"{base}/readyz", timeout=30)
        assert ready["ready"] is True and ready["redis_problem"]["cause"] == "unreachable"
        redis_server.start()

        def recovered() -> bool:
            status = http_json(f"{base}/api/status")
            return status["state"] == "idle" and status["redis_problem"] is None

        wait_until(recovered, 30, "status")
        assert process.running
        log = process.log_text()
        assert "Traceback" not in log
        # Said once when it began, once when it ended.
        assert log.count("Redis does not answer") == 1, log
        assert log.count("Redis answers again") == 1, log
    finally:
        process.stop()


def test_generator_starts_serving_before_redis_answers(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    port = free_port()
    process = Process(
        "generator",
        [sys.executable, "-m", "generator"],
        tmp_path / "generator.log",
        env=service_env({"REDIS_URL": redis.url, "PORT": str(port)}),
    )
    process.start()
    base = f"http://127.0.0.1:{port}"
    try:
        status = wait_until(lambda: http_json(f"{base}/api/status"), 30, "generator")
        assert status["redis_problem"]["cause"] == "unreachable", status
        with pytest.raises(urllib.error.HTTPError) as answer:
            http_json(f"{base}/readyz", timeout=30)
        assert answer.value.code == 503
        assert "Redis does not answer" in json.loads(answer.value.read())["error"]
        redis.start()
        wait_until(lambda: http_json(f"{base}/readyz")["ready"], 30, "generator ready")
        assert http_json(f"{base}/api/status")["redis_problem"] is None
    finally:
        process.stop()
        redis.stop()
