"""Redis itself fails mid-run (restart with and without its data, memory full), and NATS goes
away under a consumer: no process exits, every outcome is true and named.

Where Redis kept its data every key is still consumed exactly once; where it lost it, the test
is reported ``interrupted`` with the reason and a new test runs cleanly. Each run is measured
into ``test-output/faults.jsonl`` like the other faults.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dev.local_system import (
    LocalSystem,
    NatsServer,
    RedisServer,
    http_json,
    wait_until,
)
from tests.support import (
    FAULTS_JSONL,
    FaultRow,
    RecoveryWatch,
    check_every_key,
    check_jetstream_settled,
    record_run,
    redis_client,
    start_consumer,
    tally,
    wait_generated,
)

from .conftest import StartSystem
from .test_faults import FAULT_AFTER_KEYS, KEYS, check_exactly_once, run_with_fault

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[list[RedisServer]]:
    """Redis servers a test starts itself (to restart them with its own options)."""
    servers: list[RedisServer] = []
    yield servers
    for server in servers:
        server.stop()


def system_on(
    start_system: StartSystem, own_redis: list[RedisServer], tmp_path: Path, *extra: str
) -> tuple[LocalSystem, RedisServer]:
    server = RedisServer(tmp_path / "redis", extra=extra).start()
    own_redis.append(server)
    return start_system(redis_url=server.url), server


def status_when(system: LocalSystem, what: str, check: Any, timeout: float = 60) -> dict[str, Any]:
    """Poll the status until ``check(status)`` holds; return that status."""

    def matching() -> dict[str, Any] | None:
        status = system.status()
        return status if check(status) else None

    return dict(wait_until(matching, timeout, what, interval=0.05))


def generator_log(system: LocalSystem) -> str:
    assert system.generator is not None
    return system.generator.log_text()


def assert_generator_alive_and_quiet(system: LocalSystem) -> None:
    assert system.generator is not None and system.generator.running, generator_log(system)
    log = generator_log(system)
    assert "Traceback" not in log, log[-5000:]


def test_redis_restarted_without_its_data(
    start_system: StartSystem, own_redis: list[RedisServer], tmp_path: Path
) -> None:
    """The test's record is gone: it is reported interrupted with the reason, the figures
    agree, and a new test runs exactly once."""
    system, server = system_on(start_system, own_redis, tmp_path)
    started = system.start_test(num_keys=KEYS, key_delay=1)
    written_before = wait_generated(system, FAULT_AFTER_KEYS)
    watch = RecoveryWatch(system)
    watch.start_clock()
    server.stop()  # no save, no appendonly: everything is gone
    down = status_when(
        system, "the outage in the status", lambda s: (s["redis_problem"] or {}).get("cause")
    )
    assert down["redis_problem"]["cause"] == "unreachable"
    assert down["test_id"] == started["test_id"] and down["is_running"], down
    time.sleep(1)
    server.start()
    back_at = time.monotonic()
    status = status_when(
        system,
        "the test reported interrupted",
        lambda s: s["state"] == "interrupted" and s["redis_problem"] is None,
    )
    interrupted_after = round(time.monotonic() - back_at, 2)
    assert status["test_id"] == started["test_id"], status
    assert not status["is_running"]
    assert "Redis restarted without its data" in status["reason"], status
    assert status["verdict"] is None
    # Redis holds nothing of the test's keys any more, and the figures say so.
    assert status["generated"] == status["in_flight"] == status["pending"] == 0, status
    again = system.start_test(num_keys=1000, key_delay=0)
    assert again["test_id"] != started["test_id"]
    final = system.wait_test_end(timeout=60)
    assert final["test_id"] == again["test_id"] and final["state"] == "finished", final
    assert final["reason"] is None
    assert final["verdict"]["expected"] == 1000, final
    assert_generator_alive_and_quiet(system)
    check_every_key(system, final)
    check_jetstream_settled(system)
    assert_generator_alive_and_quiet(system)
    log = generator_log(system)
    assert log.count("Redis does not answer") == 1, log[-5000:]
    assert f"test {started['test_id']} interrupted: Redis restarted without its data" in log
    watch.keys_at_fault = written_before
    row = FaultRow(
        fault="Redis restart without persistence (test reported `interrupted`, next test run)",
        keys=final["generated"],
        lost=0,
        duplicates=0,
        recovered=int(final["recovered"]),
        redelivered=int(final["redelivered"]),
        dead_letters=int(final["dead_letters"]),
        recovery_s=interrupted_after,
        fault_s=None,
        end_after_fault_s=None,
        keys_at_fault=written_before,
        consumers=len(system.consumer_processes),
        state=str(status["state"]),
        exactly_once=bool(final["verdict"]["exactly_once"]),
        test_id=str(final["test_id"]),
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    _append_row(row)


def _append_row(row: FaultRow) -> None:
    from dataclasses import asdict

    FAULTS_JSONL.parent.mkdir(parents=True, exist_ok=True)
    with FAULTS_JSONL.open("a", encoding="utf-8") as out:
        out.write(json.dumps(asdict(row)) + "\n")


@pytest.mark.parametrize("down_s", [1, 6])
def test_redis_killed_and_restarted_with_appendonly(
    start_system: StartSystem, own_redis: list[RedisServer], tmp_path: Path, down_s: int
) -> None:
    """kill -9, back after ``down_s`` with every acknowledged write (appendfsync always): the
    generator waits, says why, and goes on; the test ends exactly once."""
    system, server = system_on(
        start_system, own_redis, tmp_path, "--appendonly", "yes", "--appendfsync", "always"
    )
    seen: list[dict[str, Any]] = []

    def crash_and_restart() -> None:
        server.process.kill()
        seen.append(
            status_when(
                system, "the outage in the status", lambda s: s["redis_problem"] is not None
            )
        )
        time.sleep(down_s)
        server.start()
        # The port opens before the data is loaded back.
        wait_until(redis_client(system).ping, 30, "Redis loaded")

    status, row = run_with_fault(
        system, f"kill -9 Redis (appendonly), restart after {down_s} s", crash_and_restart
    )
    assert seen[0]["redis_problem"]["cause"] == "unreachable", seen
    assert seen[0]["is_running"] and seen[0]["test_id"] == status["test_id"], seen
    assert status["state"] == "finished", status
    assert status["redis_problem"] is None, status
    assert status["generated"] == KEYS
    assert_generator_alive_and_quiet(system)
    assert row.dead_letters == 0, row  # an outage spends no delivery attempt
    check_exactly_once(system, status, row)


BURST_KEYS = 50_000


def test_redis_unreachable_for_six_seconds_during_a_burst(
    start_system: StartSystem, own_redis: list[RedisServer], tmp_path: Path
) -> None:
    """50,000 keys at delay 0, Redis killed (appendonly) once 20,000 are written and back 6 s
    later: claims, completions and the generator's writes wait it out, no delivery attempt is
    spent on it, and every key is consumed exactly once."""
    system, server = system_on(
        start_system, own_redis, tmp_path, "--appendonly", "yes", "--appendfsync", "always"
    )
    started = system.start_test(num_keys=BURST_KEYS, key_delay=0)
    wait_generated(system, 20_000)
    watch = RecoveryWatch(system)
    watch.start_clock()
    server.process.kill()
    time.sleep(6)
    server.start()
    wait_until(redis_client(system).ping, 30, "Redis loaded")
    watch.watch_keys()
    status = system.wait_test_end(timeout=240)
    row = record_run("Redis unreachable for 6 s during a 50,000-key burst", system, status, watch)
    assert status["test_id"] == started["test_id"] and status["state"] == "finished", status
    assert status["generated"] == BURST_KEYS
    assert_generator_alive_and_quiet(system)
    assert row.dead_letters == 0, row  # an outage spends no delivery attempt
    check_exactly_once(system, status, row)


def test_redis_out_of_memory(
    start_system: StartSystem, own_redis: list[RedisServer], tmp_path: Path
) -> None:
    """maxmemory reached (noeviction) for 3 s: writes are refused, the generator says why and
    waits, then goes on; every key is consumed exactly once."""
    system, _ = system_on(start_system, own_redis, tmp_path)
    client = redis_client(system)
    seen: list[dict[str, Any]] = []

    def fill_memory() -> None:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", "1")
        seen.append(
            status_when(
                system,
                "out of memory in the status",
                lambda s: (s["redis_problem"] or {}).get("cause") == "out of memory",
                timeout=30,
            )
        )
        time.sleep(3)
        client.config_set("maxmemory", "0")

    status, row = run_with_fault(system, "Redis at maxmemory (noeviction) for 3 s", fill_memory)
    assert seen[0]["is_running"] and seen[0]["test_id"] == status["test_id"], seen
    assert "out of memory" in seen[0]["redis_problem"]["message"]
    assert status["state"] == "finished", status
    assert status["redis_problem"] is None, status
    assert status["generated"] == KEYS
    assert_generator_alive_and_quiet(system)
    log = generator_log(system)
    assert log.count("Redis is out of memory") == 1, log[-5000:]
    assert row.dead_letters == 0, row  # refused writes spend no delivery attempt
    check_exactly_once(system, status, row)


def test_a_test_redis_refuses_too_long_ends_failed_with_the_reason(
    start_system: StartSystem, own_redis: list[RedisServer], tmp_path: Path
) -> None:
    """Memory stays full for longer than the drain timeout: the test ends ``failed`` naming
    the cause; the generator lives on and runs the next test."""
    server = RedisServer(tmp_path / "redis").start()
    own_redis.append(server)
    system = start_system(redis_url=server.url, consumers=2, env={"DRAIN_TIMEOUT_S": "2"})
    client = redis_client(system)
    started = system.start_test(num_keys=KEYS, key_delay=1)
    wait_generated(system, 500)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    try:
        failed = status_when(system, "the test failed", lambda s: s["state"] == "failed")
    finally:
        client.config_set("maxmemory", "0")
    assert failed["test_id"] == started["test_id"]
    assert not failed["is_running"]
    assert "out of memory" in failed["reason"], failed
    again = system.start_test(num_keys=500, key_delay=0)
    final = system.wait_test_end(timeout=60)
    assert final["test_id"] == again["test_id"] and final["state"] == "finished", final
    assert final["verdict"]["exactly_once"] is True, final
    # Key by key; leases of the failed test's keys may still be running out meanwhile.
    counts = tally(system)
    assert counts.generated == counts.records == 500 and counts.duplicates == 0, counts
    assert_generator_alive_and_quiet(system)


def test_keys_with_a_ttl_longer_than_the_drain_timeout_are_waited_for(
    start_system: StartSystem,
) -> None:
    """Nothing can move before the keys' deadline: the drain timeout counts from it."""
    system = start_system(consumers=2, env={"DRAIN_TIMEOUT_S": "1"})
    started = system.start_test(num_keys=300, key_delay=0, key_ttl=4000)
    status = system.wait_test_end(timeout=60)
    assert status["test_id"] == started["test_id"]
    assert status["state"] == "finished", status
    assert status["verdict"]["exactly_once"] is True, status
    check_every_key(system, status)


def readiness(port: int) -> dict[str, Any]:
    try:
        return dict(http_json(f"http://127.0.0.1:{port}/readyz", timeout=2))
    except Exception as exc:  # 503 carries the same body
        body = getattr(exc, "read", lambda: b"{}")()
        return dict(json.loads(body or b"{}"))


def test_a_consumer_is_not_ready_while_nats_is_down(
    tmp_path: Path, redis_server: RedisServer, nats_server: NatsServer
) -> None:
    process, port = start_consumer(tmp_path, REDIS_URL=redis_server.url, NATS_URL=nats_server.url)
    try:
        wait_until(lambda: readiness(port).get("ready"), 30, "consumer ready")
        nats_server.stop()
        down = wait_until(lambda: (r := readiness(port)) and not r["ready"] and r, 30, "unready")
        assert down["nats_connected"] is False, down
        nats_server.start()
        wait_until(lambda: readiness(port).get("ready"), 60, "consumer ready again")
        assert process.running
    finally:
        process.stop()
