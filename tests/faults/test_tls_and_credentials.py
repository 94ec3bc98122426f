"""Redis and NATS over TLS with private CAs, and a user of a NATS account (JWT + nkey
``.creds`` file).

The certificates are made in the test (trustme); redis-server serves TLS only (``rediss://``,
the CA in the URL's ``ssl_ca_certs``); nats-server runs in operator mode and knows only the
account that signed the user. A run goes end to end over them; a consumer given the wrong CA
or the wrong credentials stays unready and says in one line what to fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from dev.local_system import NatsServer, Process, RedisServer, wait_until
from tests.nats_auth import Account
from tests.support import (
    check_every_key,
    check_jetstream_settled,
    redis_tls_files,
    start_consumer,
)

from .conftest import StartSystem
from .test_security import readyz_status

pytestmark = [pytest.mark.e2e]


@dataclass(frozen=True)
class SecureNats:
    """A TLS-only nats-server in operator mode, the CA that signed it, and a user's creds."""

    server: NatsServer
    ca_file: Path
    creds: Path
    account: Account


@pytest.fixture
def secure_nats(tmp_path: Path) -> Iterator[SecureNats]:
    ca = trustme.CA()
    server_pem = tmp_path / "nats-server.pem"
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(server_pem)
    )
    ca_file = tmp_path / "nats-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    account = Account.new()
    config = (
        account.server_config()
        + f'tls {{\n  cert_file: "{server_pem}"\n  key_file: "{server_pem}"\n}}\n'
    )
    server = NatsServer(tmp_path, config=config, scheme="tls").start()
    try:
        yield SecureNats(server, ca_file, account.user_creds(tmp_path / "user.creds"), account)
    finally:
        server.stop()


@pytest.fixture
def secure_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, tls=redis_tls_files(tmp_path)).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_run_over_tls_with_account_credentials_is_exactly_once(
    secure_nats: SecureNats, secure_redis: RedisServer, start_system: StartSystem
) -> None:
    assert secure_nats.server.url.startswith("tls://")
    assert secure_redis.url.startswith("rediss://")
    system = start_system(
        consumers=2,
        redis_url=secure_redis.url,
        nats_url=secure_nats.server.url,
        env={"NATS_CA_FILE": str(secure_nats.ca_file), "NATS_CREDS": str(secure_nats.creds)},
    )
    started = system.start_test(num_keys=500, key_delay=1)
    status = system.wait_test_end(timeout=60)
    assert status["test_id"] == started["test_id"]
    assert status["state"] == "finished", system.logs()
    check_every_key(system, status)
    check_jetstream_settled(system, secure_nats.server.monitor_port)
    assert "Traceback" not in system.logs()
    seed = secure_nats.creds.read_text().split("-----BEGIN USER NKEY SEED-----")[1].split()[0]
    for process in system.consumer_processes:
        assert seed not in process.log_text()  # the user's secret never reaches a log


def connection_lines(process: Process) -> list[str]:
    """The consumer's log lines about connecting to NATS."""
    return [line for line in process.log_text().splitlines() if "NATS at tls://" in line]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("another CA", "TLS certificate is not trusted"),
        ("system CAs only", "set NATS_CA_FILE"),
        ("creds of another account", "the server refused the credentials in NATS_CREDS"),
        ("no creds", "or set NATS_CREDS to the user's .creds file"),
    ],
)
def test_a_wrong_ca_or_credentials_file_is_one_clear_line(
    secure_nats: SecureNats, tmp_path: Path, case: str, expected: str
) -> None:
    env = {
        "NATS_URL": secure_nats.server.url,
        "NATS_CA_FILE": str(secure_nats.ca_file),
        "NATS_CREDS": str(secure_nats.creds),
    }
    if case == "another CA":
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        env["NATS_CA_FILE"] = str(other)
    elif case == "system CAs only":
        del env["NATS_CA_FILE"]
    elif case == "creds of another account":
        env["NATS_CREDS"] = str(Account.new().user_creds(tmp_path / "stranger.creds"))
    else:
        del env["NATS_CREDS"]
    redis_server = RedisServer(tmp_path).start()
    process, _ = start_consumer(tmp_path, "consumer-x", REDIS_URL=redis_server.url, **env)
    try:
        wait_until(lambda: connection_lines(process), 30, "the consumer's complaint")
        port = int((process.env or {})["HEALTH_PORT"])
        assert process.running
        assert wait_until(lambda: readyz_status(port), 10, "its /readyz") == 503
    finally:
        process.kill()
        redis_server.stop()
    log = process.log_text()
    assert "Traceback" not in log, log
    assert "eof_received" not in log, log
    [first, *_] = connection_lines(process)
    assert expected in first, log
    print(first)


def test_a_redis_certificate_from_another_ca_is_refused_clearly(
    secure_redis: RedisServer, secure_nats: SecureNats, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    assert secure_redis.tls is not None
    wrong_url = secure_redis.url.replace(str(secure_redis.tls[2]), str(other))
    env = {
        "NATS_URL": secure_nats.server.url,
        "NATS_CA_FILE": str(secure_nats.ca_file),
        "NATS_CREDS": str(secure_nats.creds),
    }
    process, _ = start_consumer(tmp_path, "consumer-r", REDIS_URL=wrong_url, **env)
    try:
        wait_until(lambda: "certificate verify failed" in process.log_text(), 30, "a complaint")
        assert process.running
    finally:
        process.kill()
    log = process.log_text()
    assert "Traceback" not in log, log
    first = next(line for line in log.splitlines() if "certificate verify failed" in line)
    assert "Redis's TLS certificate is not trusted" in first, log
    assert "add ?ssl_ca_certs=" in first, log
    print(first)
