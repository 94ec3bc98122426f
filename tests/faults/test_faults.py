"""Faults injected into a live run of real processes: every key is still consumed exactly once.

Each test writes a few thousand keys (one per millisecond, so a run lasts a few seconds),
injects one fault once 1,500 keys are written, waits for the verdict and then checks key by
key. Each run is measured (lost, doubled, swept keys, recovery time) into
``test-output/faults.jsonl``; ``scripts/fault_table.py`` prints the table.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import nats
import pytest

from dev.local_system import LocalSystem
from shared import names
from tests.support import (
    FaultRow,
    RecoveryWatch,
    check_every_key,
    check_jetstream_settled,
    record_run,
    redis_client,
    wait_generated,
)

from .conftest import StartSystem

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

KEYS = 4000
FAULT_AFTER_KEYS = 1500
END_TIMEOUT_S = 120


def run_with_fault(
    system: LocalSystem, fault: str, inject: Callable[[], object]
) -> tuple[dict[str, Any], FaultRow]:
    """Start a test, inject the fault mid-run, wait for the verdict; measure and record it.

    ``inject`` returns once the fault is over (for an outage: once everything is back); the
    recovery time runs from then.
    """
    started = system.start_test(num_keys=KEYS, key_delay=1)
    wait_generated(system, FAULT_AFTER_KEYS)
    watch = RecoveryWatch(system)
    watch.start_clock()
    inject()
    watch.watch_keys()
    status = system.wait_test_end(timeout=END_TIMEOUT_S)
    assert status["test_id"] == started["test_id"], status
    row = record_run(fault, system, status, watch)
    return status, row


def check_exactly_once(system: LocalSystem, status: dict[str, Any], row: FaultRow) -> None:
    """The run's verdict and the keys in Redis and JetStream all say exactly once."""
    check_every_key(system, status)
    check_jetstream_settled(system)
    assert row.lost == row.duplicates == 0, row
    assert row.recovery_s is not None, f"keys written before the fault never all consumed: {row}"


def test_no_fault_baseline(start_system: StartSystem) -> None:
    system = start_system()
    status, row = run_with_fault(system, "none (baseline)", lambda: None)
    assert status["state"] == "finished"
    check_exactly_once(system, status, row)
    assert status["generated"] == KEYS


def test_one_consumer_killed_and_left_dead(start_system: StartSystem) -> None:
    system = start_system()
    victim = system.consumer_processes[1]
    status, row = run_with_fault(system, "kill -9 one consumer (left dead)", victim.kill)
    assert not victim.running
    assert status["state"] == "finished"
    assert status["generated"] == KEYS
    check_exactly_once(system, status, row)


def test_all_consumers_killed_for_two_seconds(start_system: StartSystem) -> None:
    system = start_system()

    def outage() -> None:
        for process in system.consumer_processes:
            process.kill()
        time.sleep(2)
        for index in range(len(system.consumer_processes)):
            system.restart_consumer(index, wait=False)
        for index in range(len(system.consumer_processes)):
            system.wait_consumer_ready(index)

    status, row = run_with_fault(system, "kill -9 all consumers for 2 s, restart", outage)
    assert status["state"] == "finished"
    assert status["generated"] == KEYS
    check_exactly_once(system, status, row)
    # Expiries fired while nobody listened: only the sweepers can have found those keys.
    assert row.recovered > 0, row


def test_one_consumer_stopped_with_sigterm_drains_and_exits_0(start_system: StartSystem) -> None:
    system = start_system()
    victim = system.consumer_processes[2]
    codes: list[int] = []

    def terminate() -> None:
        victim.signal(signal.SIGTERM)
        assert victim.popen is not None
        codes.append(victim.popen.wait(30))

    status, row = run_with_fault(system, "SIGTERM one consumer (graceful drain)", terminate)
    assert codes == [0], victim.log_text()[-3000:]
    log = victim.log_text()
    assert "stopping" in log and "stopped" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert status["state"] == "finished"
    assert status["generated"] == KEYS
    check_exactly_once(system, status, row)


def test_one_consumer_frozen_longer_than_its_lease(start_system: StartSystem) -> None:
    """SIGSTOP, as a long GC pause or a stalled VM would: the others take over its keys and
    messages; when it wakes it still holds them, and must not count any of them again."""
    system = start_system()
    victim = system.consumer_processes[1]
    lease_s = 10  # CLAIM_LEASE_MS default; ack wait is 5 s

    def freeze() -> None:
        victim.signal(signal.SIGSTOP)
        time.sleep(lease_s + 2)
        victim.signal(signal.SIGCONT)

    status, row = run_with_fault(system, "SIGSTOP one consumer for 12 s (past its lease)", freeze)
    assert victim.running
    assert status["state"] == "finished"
    assert status["generated"] == KEYS
    check_exactly_once(system, status, row)
    system.wait_consumer_ready(1)


@pytest.mark.parametrize("client_type", ["pubsub", "normal"])
def test_redis_drops_client_connections(start_system: StartSystem, client_type: str) -> None:
    system = start_system()
    client = redis_client(system)
    killed: list[int] = []

    def drop_connections() -> None:
        killed.append(int(client.client_kill_filter(_type=client_type)))

    status, row = run_with_fault(system, f"Redis CLIENT KILL TYPE {client_type}", drop_connections)
    # The listeners (2 by default) hold subscriptions; every process holds normal connections.
    assert killed[0] >= 2
    if client_type == "pubsub":
        listening = [p for p in system.consumer_processes if p.name in system.status()["listeners"]]
        assert len(listening) == killed[0] == 2
        for process in listening:
            assert "Redis subscription lost" in process.log_text(), process.name
            assert "subscribed to __keyspace@0__:gen-key:* again" in process.log_text()
    assert status["state"] == "finished"
    assert status["generated"] == KEYS
    check_exactly_once(system, status, row)


def test_nats_server_restarted(start_system: StartSystem) -> None:
    system = start_system()
    assert system.nats is not None
    nats_server = system.nats

    def restart_nats() -> None:
        # Memory storage: the restarted server has no stream, the queued messages are gone.
        nats_server.stop()
        time.sleep(1)
        nats_server.start()

    status, row = run_with_fault(system, "NATS server restart (queue lost)", restart_nats)
    assert status["state"] == "finished"
    assert status["generated"] == KEYS
    check_exactly_once(system, status, row)


def test_generator_killed_and_restarted(start_system: StartSystem) -> None:
    system = start_system()
    assert system.generator is not None
    generator = system.generator
    states_after_restart: list[str] = []

    def crash_and_restart() -> None:
        generator.kill()
        system.restart_generator()
        states_after_restart.append(system.status()["state"])

    status, row = run_with_fault(system, "kill -9 generator, restart", crash_and_restart)
    assert states_after_restart == ["interrupted"]
    assert status["state"] == "interrupted", status
    assert FAULT_AFTER_KEYS <= status["generated"] < KEYS
    check_exactly_once(system, status, row)
    # The restarted generator gives the verdict once, and accepts a new test afterwards.
    assert generator.log_text().count(f"test {status['test_id']} interrupted:") == 1
    again = system.start_test(num_keys=200, key_delay=0)
    assert again["test_id"] != status["test_id"]
    assert system.wait_test_end(timeout=60)["verdict"]["exactly_once"]


async def publish_poison(nats_url: str, test_id: str) -> None:
    """Publish a message that carries no claim, as a foreign publisher might."""
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().publish(
            names.SUBJECT,
            b"this is not a claim",
            headers={"Nats-Msg-Id": f"{test_id}:poison", names.CLAIM_HEADER: "not|a|claim"},
        )
    finally:
        await client.close()


def test_a_poison_message_becomes_one_dead_letter(start_system: StartSystem) -> None:
    system = start_system()
    assert system.nats_url

    def poison() -> None:
        asyncio.run(publish_poison(system.nats_url or "", system.status()["test_id"]))

    status, row = run_with_fault(system, "poison message on the work queue", poison)
    assert status["state"] == "finished"
    assert status["generated"] == KEYS
    check_exactly_once(system, status, row)
    assert status["dead_letters"] == 1, status
    assert status["verdict"]["dead_letters"] == 1, status
    client = redis_client(system)
    [record] = client.lrange(names.EXPIRY_DEAD_LETTERS, 0, -1)
    assert json.loads(record)["key"] == "this is not a claim"
    assert "malformed" in json.loads(record)["error"]
    assert client.smembers(names.TEST_DEAD_LETTERS) == set()  # none of the test's keys
