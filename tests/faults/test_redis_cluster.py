"""The whole system on a Redis Cluster of 3 masters and 3 replicas (real nodes on loopback).

Keyspace events are node-local, so the listeners subscribe on every master and follow the
topology; every script touches one slot group's keys. A master killed mid-run (kill -9) is
replaced by its replica; every key is still consumed exactly once. Redis replicates
asynchronously: a write acknowledged in the last moment before the kill can be lost with
the master (README, "Redis Cluster"); on loopback that window is a few microseconds.
"""

from __future__ import annotations

import pytest

from dev.local_system import LocalSystem, RedisServer, wait_until
from shared import names
from tests.support import check_every_key, check_jetstream_settled, layout_of, redis_client

from .conftest import StartSystem
from .test_faults import check_exactly_once, run_with_fault

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


def consumed_in_all_groups(system: LocalSystem) -> int:
    client = redis_client(system)
    return sum(
        int(client.get(name) or 0) for name in layout_of(system).every(names.METRICS_CONSUMED)
    )


def check_heard_on(system: LocalSystem, node: RedisServer, count: int = 20) -> None:
    """Plain keys (``SET … PX``, not registered: only an expiry event can bring them) written
    to ``node`` are consumed: the consumers listen on it."""
    assert system.redis_nodes is not None
    served = next(line for line in system.redis_nodes.topology() if line.port == node.port)
    keys = [
        key
        for key in (f"gen-key:plain-{i}" for i in range(100_000))
        if served.serves(names.key_slot(key))
    ][:count]
    before = consumed_in_all_groups(system)
    client = redis_client(system)
    for key in keys:
        client.set(key, "plain", px=50)
    wait_until(
        lambda: consumed_in_all_groups(system) >= before + count,
        30,
        f"the plain keys expiring on {node.port} to be consumed",
    )


CLUSTER_KEYS = 20_000


def test_20000_keys_exactly_once_on_a_redis_cluster(start_system: StartSystem) -> None:
    system = start_system(redis_cluster=True)
    assert system.redis_nodes is not None
    started = system.start_test(num_keys=CLUSTER_KEYS, key_delay=0)
    status = system.wait_test_end(timeout=240)
    assert status["test_id"] == started["test_id"], status
    assert status["state"] == "finished", status
    assert status["generated"] == CLUSTER_KEYS
    check_every_key(system, status)
    check_jetstream_settled(system)
    # The state really is spread: every slot group holds records of the test, and the
    # groups' hash tags put them on every master.
    client = redis_client(system)
    layout = layout_of(system)
    sizes = [client.hlen(group.name(names.TEST_CONSUMED)) for group in layout.groups]
    assert all(size > 0 for size in sizes) and sum(sizes) == CLUSTER_KEYS, sizes
    masters = {system.redis_nodes.master_of_slot(names.key_slot(g.tag)).port for g in layout.groups}
    assert len(masters) == 3, masters


def test_a_redis_master_killed_mid_run(start_system: StartSystem) -> None:
    system = start_system(redis_cluster=True)
    cluster = system.redis_nodes
    assert cluster is not None
    # The master holding the listener slots: the hardest to lose. Its replica takes over
    # within seconds; meanwhile the listeners cannot renew their slots and go on listening (the
    # other masters still announce expiries), and the generator waits.
    listener_slot = names.key_slot(names.listener_slot("", 0))
    victim = cluster.master_of_slot(listener_slot)

    def kill_master() -> None:
        cluster.kill(victim)
        cluster.wait_failover(timeout=30)

    status, row = run_with_fault(
        system,
        "kill -9 the Redis Cluster master holding the listener slots (3 masters + 3 replicas)",
        kill_master,
    )
    assert not victim.process.running
    assert victim not in cluster.masters()
    assert status["state"] == "finished"
    check_exactly_once(system, status, row)
    for process in system.consumer_processes:
        assert "Traceback" not in process.log_text(), process.log_text()[-3000:]
    for process in system.consumer_processes:
        assert "no longer listening" not in process.log_text(), process.log_text()[-3000:]
    check_heard_on(system, cluster.master_of_slot(listener_slot))


def test_a_redis_master_added_and_slots_moved_to_it_mid_run(start_system: StartSystem) -> None:
    """Resharding while keys expire: keys and slot groups move to a new master (MIGRATE, with
    their TTLs), and the consumers subscribe to it without a restart."""
    system = start_system(redis_cluster=True)
    cluster = system.redis_nodes
    assert cluster is not None
    source = cluster.master_of_slot(0)
    added: list[RedisServer] = []

    def grow() -> None:
        added.append(cluster.add_master())
        cluster.reshard(source, added[0], 2000)

    status, row = run_with_fault(
        system, "add a Redis Cluster master and move 2,000 slots to it (resharding)", grow
    )
    assert status["state"] == "finished"
    check_exactly_once(system, status, row)
    [new] = added
    assert new in cluster.masters()
    assert any(line.port == new.port and line.slots for line in cluster.topology())
    check_heard_on(system, new)
