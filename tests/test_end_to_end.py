"""The whole system: generator and 6 consumer processes, real Redis and NATS."""

import pytest

from dev.local_system import LocalSystem
from tests.support import check_every_key, check_jetstream_settled, redis_client


@pytest.mark.e2e
def test_two_thousand_keys_at_the_defaults_are_each_consumed_once(
    fresh_system: LocalSystem,
) -> None:
    started = fresh_system.start_test(num_keys=2000)
    assert started["config"] == {
        "num_keys": 2000,
        "key_delay": 1,
        "key_ttl": 100,
        "dedup_window": 5000,
    }
    status = fresh_system.wait_test_end(timeout=120)
    assert status["state"] == "finished", fresh_system.logs()
    assert status["generated"] == status["consumed"] == 2000
    assert status["verdict"] == {
        "exactly_once": True,
        "expected": 2000,
        "consumed": 2000,
        "missing": 0,
        "duplicates": 0,
        "dead_letters": 0,
    }
    check_every_key(fresh_system, status)
    check_jetstream_settled(fresh_system)
    records = redis_client(fresh_system).hgetall("test:consumed")
    # The per-consumer counts agree with the per-key records. At 1 key/ms the lead listener
    # works the queue alone; the others join in while a backlog waits (see the burst test).
    by_consumer: dict[str, int] = {}
    for value in records.values():
        consumer = value.split()[0]
        by_consumer[consumer] = by_consumer.get(consumer, 0) + 1
    assert status["consumers"] == by_consumer
    assert sum(status["consumers"].values()) == 2000
    assert len([c for c in status["consumers"].values() if c > 0]) >= 1
    assert status["latency_ms"]["count"] == 2000
    # Every process stops cleanly on SIGTERM.
    assert set(fresh_system.stop().values()) == {0}, fresh_system.logs()


@pytest.mark.e2e
def test_a_burst_is_worked_by_the_whole_fleet(fresh_system: LocalSystem) -> None:
    fresh_system.start_test(num_keys=20_000, key_delay=0)
    status = fresh_system.wait_test_end(timeout=120)
    assert status["generated"] == status["consumed"] == 20_000
    check_every_key(fresh_system, status)
    # A backlog: the consumers that do not lead join in.
    assert len([c for c in status["consumers"].values() if c > 0]) >= 3, status["consumers"]


@pytest.mark.e2e
@pytest.mark.parametrize("fresh_system", [3], indirect=True)
def test_a_test_right_after_another_is_not_deduplicated_against_it(
    fresh_system: LocalSystem,
) -> None:
    for _ in range(2):
        fresh_system.start_test(num_keys=300, key_delay=0, dedup_window=60_000)
        status = fresh_system.wait_test_end(timeout=60)
        assert status["generated"] == 300
        check_every_key(fresh_system, status)
