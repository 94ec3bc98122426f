"""Any application's keys: written by processes that are not our generator, real servers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from dev.local_system import LocalSystem, service_env, wait_until
from shared import names, scripts
from tests.support import REPO, check_every_key, redis_client

AUDIT = "audit:session-timeouts"


def stream_state(system: LocalSystem, stream: str) -> dict[str, Any]:
    assert system.nats is not None
    url = f"http://127.0.0.1:{system.nats.monitor_port}/jsz?streams=true"
    with urllib.request.urlopen(url, timeout=5) as response:
        document = json.loads(response.read())
    for account in document.get("account_details", []):
        for detail in account.get("stream_detail", []):
            if detail["name"] == stream:
                return dict(detail["state"])
    raise AssertionError(f"no stream {stream}")


def seed_style_producer(client: redis.Redis, count: int, ttl_ms: int) -> None:
    """What the original implementation's generator does, knowing nothing of our internals."""
    client.set(names.METRICS_GENERATED, 0)
    client.set(names.METRICS_CONSUMED, 0)
    for key in client.scan_iter("metrics:consumer:*"):  # the seed used KEYS here
        client.delete(key)
    for i in range(count):
        client.set(f"gen-key:{i}", i, px=ttl_ms)
        client.incr(names.METRICS_GENERATED)


@pytest.fixture(scope="module")
def sessions_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    """3 consumers handling gen-key:* and session:* with the example's audit handler."""
    system = LocalSystem(
        tmp_path_factory.mktemp("own-keys"),
        consumers=3,
        env={
            "KEY_PATTERNS": "gen-key:*,session:*",
            "HANDLER": "examples.session_timeouts.handler:audit",
            "PYTHONPATH": str(REPO),
        },
    ).start()
    yield system
    system.stop()


@pytest.mark.e2e
def test_a_seed_style_producer_s_plain_keys_are_each_consumed_once(
    sessions_system: LocalSystem,
) -> None:
    client = redis_client(sessions_system)
    before = stream_state(sessions_system, names.STREAM)["last_seq"]
    for i in range(200):  # keys outside KEY_PATTERNS expire meanwhile
        client.set(f"other:{i}", "x", px=50)
    seed_style_producer(client, 1000, ttl_ms=100)

    def consumed() -> int | None:
        count = int(client.get(names.METRICS_CONSUMED) or 0)
        return count if count >= 1000 else None

    wait_until(consumed, 60, "1000 keys consumed", interval=0.1)
    time.sleep(1)  # anything counted twice would show by now
    assert client.get(names.METRICS_CONSUMED) == client.get(names.METRICS_GENERATED) == "1000"
    per_consumer = [int(client.get(k) or 0) for k in client.scan_iter("metrics:consumer:*")]
    assert sum(per_consumer) == 1000
    # Every key handled once, key by key (the audit handler keeps one record per key).
    records = client.hgetall(AUDIT)
    assert {f"gen-key:{i}" for i in range(1000)} <= set(records)
    assert not any(key.startswith("other:") for key in records)
    # Exactly the 1000 matching keys were published; none of the others.
    assert stream_state(sessions_system, names.STREAM)["last_seq"] - before == 1000
    assert client.zcard(names.EXPIRY_LEASES) == 0


@pytest.mark.e2e
def test_registered_keys_written_while_every_consumer_is_down_are_handled_after(
    sessions_system: LocalSystem,
) -> None:
    client = redis_client(sessions_system)
    client.function_load(scripts.FUNCTION_LIBRARY, replace=True)
    for process in sessions_system.consumer_processes:
        process.kill()
    registered = [f"session:r{i}" for i in range(300)]
    plain = [f"session:p{i}" for i in range(300)]
    pipe = client.pipeline(transaction=False)
    for key in registered:
        pipe.fcall("expiry_register", 2, key, names.EXPIRY_DUE, "user", 200)
    for key in plain:
        pipe.set(key, "user", px=200)
    pipe.execute()
    wait_until(lambda: client.exists(*registered, *plain) == 0, 10, "all sessions expired")
    for index in range(len(sessions_system.consumer_processes)):
        sessions_system.restart_consumer(index, wait=False)
    sessions_system.wait_ready()

    def all_registered_audited() -> bool:
        return all(client.hmget(AUDIT, registered))

    wait_until(all_registered_audited, 60, "every registered session audited", interval=0.2)
    records = [json.loads(r) for r in client.hmget(AUDIT, registered)]
    assert len({r["claim_id"] for r in records}) == 300  # one claim each
    assert all(r["deadline_ms"] for r in records)
    # Nobody heard the plain keys expire: that is the guarantee registration adds.
    assert not any(client.hmget(AUDIT, plain))
    wait_until(lambda: client.zcard(names.EXPIRY_LEASES) == 0, 10, "no claim left in flight")
    assert client.zcard(names.EXPIRY_DUE) == 0


@pytest.mark.e2e
def test_the_example_runs_with_one_command_beside_the_load_test(
    local_system: LocalSystem,
) -> None:
    """``make example`` against a system like ``make up``'s: its own fleet, the load test's
    consumers untouched."""
    env = service_env(
        {
            "REDIS_URL": local_system.redis_url or "",
            "NATS_URL": local_system.nats_url or "",
            "PYTHONPATH": f"{REPO / 'src'}:{REPO}",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "examples.session_timeouts", "--sessions", "300"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audited 300 of 300 sessions; missing 0" in result.stdout
    assert "each timed out exactly once" in result.stdout
    # The load test still runs on the same servers, exactly once.
    local_system.start_test(num_keys=300, key_delay=0)
    check_every_key(local_system, local_system.wait_test_end(timeout=60))
