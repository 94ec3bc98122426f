"""Secrets: the API token guards start and stop; Redis and NATS passwords work and never leak.

A secret must not show up in any log of any process (generator, consumers, Redis, NATS), nor
in an answer to a request that got it wrong.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dev.local_system import (
    LocalSystem,
    NatsServer,
    RedisServer,
    wait_until,
)
from tests.support import check_every_key, check_jetstream_settled, logs_under, start_consumer

from .conftest import StartSystem

API_TOKEN = "tok-3c9f1e7a5b2d4c6e8f0a1b3c5d7e9f1a"
REDIS_PASSWORD = "redis-pw-8e2d6b4a0c9f7e5d3b1a"
NATS_USER = "pipeline"
NATS_PASSWORD = "nats-pw-4f6a8c0e2b4d6f8a0c2e"


def request(
    system: LocalSystem, method: str, path: str, body: bytes = b"", auth: str | None = None
) -> tuple[int, dict[str, Any] | str]:
    """One request; the answer decoded from JSON when it is JSON."""
    assert system.generator_port
    connection = http.client.HTTPConnection("127.0.0.1", system.generator_port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        if auth is not None:
            headers["Authorization"] = auth
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")


def assert_no_secret_in_logs(folder: Path, *secrets: str) -> None:
    logs = logs_under(folder)
    assert any(name.endswith("generator.log") for name in logs), sorted(logs)
    for name, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"{name} shows a secret"


WRONG_AUTHORIZATIONS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer wrong-token",
    f"Bearer {API_TOKEN}x",
    f"Bearer {API_TOKEN[:-1]}",
    f"Bearer {API_TOKEN.upper()}",
    f"Basic {API_TOKEN}",
    f"Token {API_TOKEN}",
    API_TOKEN,
    f"Bearer{API_TOKEN}",
    f"Bearer {API_TOKEN} {API_TOKEN}",
    "Bearer t\u00f6k\u00e9n",  # latin-1 in a header
]


@pytest.mark.e2e
def test_api_token_guards_start_and_stop_and_is_never_logged(
    start_system: StartSystem, tmp_path: Path
) -> None:
    system = start_system(consumers=2, env={"API_TOKEN": API_TOKEN})
    before = system.status()["test_id"]
    for auth in WRONG_AUTHORIZATIONS:
        for path in ("/api/start", "/api/stop"):
            status, answer = request(system, "POST", path, b'{"num_keys": 10}', auth)
            assert status == 401, (auth, path, status, answer)
            assert isinstance(answer, dict) and answer["error"], answer
            assert API_TOKEN not in json.dumps(answer)
    assert system.status()["test_id"] == before
    assert not system.status()["is_running"]

    # Reading needs no token.
    for path in ("/api/status", "/api/metrics", "/api/history", "/healthz", "/readyz", "/metrics"):
        status, _ = request(system, "GET", path)
        assert status == 200, path

    status, started = request(
        system, "POST", "/api/start", b'{"num_keys": 3000, "key_delay": 1}', f"Bearer {API_TOKEN}"
    )
    assert status == 200 and isinstance(started, dict), started
    assert started["status"] == "started"
    time.sleep(1)
    status, _ = request(system, "POST", "/api/stop", auth="Bearer wrong-token")
    assert status == 401
    assert system.status()["state"] == "generating"
    # The scheme is case-insensitive (RFC 7235).
    status, stopping = request(system, "POST", "/api/stop", auth=f"bearer {API_TOKEN}")
    assert status == 200 and isinstance(stopping, dict), stopping
    assert stopping["status"] == "stopping"
    final = system.wait_test_end(timeout=60)
    assert final["test_id"] == started["test_id"]
    assert final["state"] == "stopped"
    assert 0 < final["generated"] < 3000
    check_every_key(system, final)
    check_jetstream_settled(system)
    status, answer = request(system, "GET", "/api/metrics")
    assert status == 200 and isinstance(answer, dict) and answer["consumed"] == final["generated"]
    assert_no_secret_in_logs(tmp_path, API_TOKEN)


@pytest.fixture
def secured_servers(tmp_path: Path) -> Iterator[tuple[RedisServer, NatsServer]]:
    """Redis with ``requirepass`` and NATS with a user and password (stopped last)."""
    redis_server = RedisServer(tmp_path / "servers", password=REDIS_PASSWORD).start()
    nats_server = NatsServer(tmp_path / "servers", user=NATS_USER, password=NATS_PASSWORD)
    try:
        nats_server.start()
        yield redis_server, nats_server
    finally:
        nats_server.stop()
        redis_server.stop()


@pytest.mark.e2e
def test_password_protected_redis_and_nats_run_exactly_once_and_stay_secret(
    secured_servers: tuple[RedisServer, NatsServer], start_system: StartSystem, tmp_path: Path
) -> None:
    redis_server, nats_server = secured_servers
    assert REDIS_PASSWORD in redis_server.url and NATS_PASSWORD in nats_server.url
    system = start_system(consumers=2, redis_url=redis_server.url, nats_url=nats_server.url)
    assert system.redis is None and system.nats is None  # the servers above, not its own
    started = system.start_test(num_keys=500, key_delay=1)
    status = system.wait_test_end(timeout=60)
    assert status["test_id"] == started["test_id"]
    assert status["state"] == "finished", system.logs()
    assert status["generated"] == 500
    check_every_key(system, status)
    check_jetstream_settled(system, nats_server.monitor_port)
    codes = system.stop()
    assert set(codes.values()) == {0}, codes
    assert_no_secret_in_logs(tmp_path, REDIS_PASSWORD, NATS_PASSWORD)


@pytest.mark.e2e
def test_wrong_passwords_keep_a_consumer_unready_and_are_never_logged(
    secured_servers: tuple[RedisServer, NatsServer], tmp_path: Path
) -> None:
    redis_server, nats_server = secured_servers
    wrong_redis = redis_server.url.replace(REDIS_PASSWORD, "wrong-redis-pw-1d3f5b7")
    wrong_nats = nats_server.url.replace(NATS_PASSWORD, "wrong-nats-pw-2e4a6c8")
    processes = [
        start_consumer(
            tmp_path, "bad-redis-password", REDIS_URL=wrong_redis, NATS_URL=nats_server.url
        ),
        start_consumer(
            tmp_path, "bad-nats-password", REDIS_URL=redis_server.url, NATS_URL=wrong_nats
        ),
    ]
    try:
        for process, _ in processes:
            wait_until(lambda p=process: "retrying" in p.log_text(), 30, f"{process.name} retrying")
        for process, port in processes:
            assert process.running, process.log_text()
            assert readyz_status(port) == 503, process.name
    finally:
        for process, _ in processes:
            process.kill()
    bad_redis_log = processes[0][0].log_text()
    bad_nats_log = processes[1][0].log_text()
    # Each says what is wrong, with the address but not the password.
    assert "Redis refused the credentials in REDIS_URL" in bad_redis_log, bad_redis_log
    assert "Authorization Violation" in bad_nats_log, bad_nats_log
    assert f"nats://{NATS_USER}:***@" in bad_nats_log, bad_nats_log
    secrets = ("wrong-redis-pw-1d3f5b7", "wrong-nats-pw-2e4a6c8", REDIS_PASSWORD, NATS_PASSWORD)
    for process, _ in processes:
        for secret in secrets:
            assert secret not in process.log_text(), f"{process.name} logs a password"


def readyz_status(port: int) -> int:
    """The HTTP status of a consumer's ``/readyz``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


# --- without a token: only the generator's own page may start and stop ---------------------
def raw_post(
    system: LocalSystem, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """POST with exactly these headers (a browser's, for instance)."""
    assert system.generator_port
    connection = http.client.HTTPConnection("127.0.0.1", system.generator_port, timeout=10)
    try:
        connection.putrequest("POST", path, skip_host="Host" in headers)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


CROSS_SITE_REQUESTS = {
    # A form or fetch from another page: no preflight is needed for text/plain.
    "other origin, text/plain": (
        {"Origin": "http://evil.example", "Content-Type": "text/plain"},
        403,
    ),
    "other origin, JSON": (
        {"Origin": "http://evil.example", "Content-Type": "application/json"},
        403,
    ),
    "opaque origin": ({"Origin": "null", "Content-Type": "application/json"}, 403),
    "same host, other port": (
        {"Origin": "http://127.0.0.1:1", "Content-Type": "application/json"},
        403,
    ),
    "cross-site fetch metadata": (
        {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"},
        403,
    ),
    # DNS rebinding: the attacker's name resolves to this address; the page is same-origin.
    "rebound host name": (
        {
            "Host": "evil.example:8080",
            "Origin": "http://evil.example:8080",
            "Content-Type": "application/json",
        },
        403,
    ),
    "form body": ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
    "no content type": ({}, 415),
}


@pytest.mark.parametrize("headers", CROSS_SITE_REQUESTS.values(), ids=CROSS_SITE_REQUESTS.keys())
def test_without_a_token_other_sites_cannot_start_or_stop_tests(
    local_system: LocalSystem, headers: tuple[dict[str, str], int]
) -> None:
    sent, refused_with = headers
    before = local_system.status()
    assert not before["is_running"], before
    for path in ("/api/start", "/api/stop"):
        status, answer = raw_post(local_system, path, b'{"num_keys": 10}', sent)
        assert status == refused_with, (path, status, answer)
        assert answer["error"], answer
    assert local_system.status()["test_id"] == before["test_id"]


def test_without_a_token_the_generators_own_page_starts_and_stops(
    local_system: LocalSystem,
) -> None:
    origin = f"http://127.0.0.1:{local_system.generator_port}"
    page = {"Origin": origin, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}
    status, started = raw_post(local_system, "/api/start", b'{"num_keys": 3000}', page)
    assert status == 200 and started["status"] == "started", started
    # Another site cannot stop it either.
    other = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    status, _ = raw_post(local_system, "/api/stop", b"", other)
    assert status == 403
    assert local_system.status()["is_running"]
    status, stopping = raw_post(local_system, "/api/stop", b"", page)
    assert status == 200 and stopping == {"status": "stopping", "test_id": started["test_id"]}
    assert local_system.wait_test_end(timeout=60)["state"] == "stopped"


def test_idle_connections_are_closed(local_system: LocalSystem) -> None:
    """Connections left idle, before or after a request, are closed by the server."""
    assert local_system.generator_port
    address = ("127.0.0.1", local_system.generator_port)
    after_a_request = []
    for _ in range(200):
        connection = socket.create_connection(address)
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        after_a_request.append(connection)
    never_used = [socket.create_connection(address) for _ in range(100)]

    def closed_by_server(connection: socket.socket) -> bytes:
        """Everything the server sent until it closed the connection."""
        connection.settimeout(60)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received

    try:
        for connection in after_a_request:
            assert closed_by_server(connection).startswith(b"HTTP/1.1 200")
        for connection in never_used:
            assert closed_by_server(connection) == b""
    finally:
        for connection in [*after_a_request, *never_used]:
            connection.close()
