"""Hearing every expiry of a real Redis Cluster: one subscription per master, across a failover."""

from collections import defaultdict

import trio
from redis.crc import key_slot

from dev.local_system import RedisClusterNodes, RedisServer
from shared.redis.pubsub import (
    ClusterSubscription,
    RedisAddress,
    cluster_masters,
    open_subscription,
    serving_masters,
)
from shared.redis.resp import RespConnection
from tests.helpers import eventually

CHANNEL = "__keyevent@0__:expired"


def address_of(node: RedisServer) -> tuple[str, int]:
    """``node`` as the subscription names it."""
    return ("127.0.0.1", node.port)


async def set_expiring(cluster: RedisClusterNodes, keys: list[str]) -> dict[int, list[str]]:
    """SET each key with PX 50 on the master that serves its slot; the keys by master port."""
    topology = cluster.topology()
    by_master: dict[int, list[str]] = defaultdict(list)
    for key in keys:
        slot = key_slot(key.encode())
        owner = next(n for n in topology if n.master and not n.failed and n.serves(slot))
        by_master[owner.port].append(key)
    for port, owned in by_master.items():
        connection = await RespConnection.open(RedisAddress.from_url(f"redis://127.0.0.1:{port}"))
        for key in owned:
            assert await connection.command("SET", key, "x", "PX", "50") == b"OK"
        await connection.aclose()
    return by_master


async def hear(subscription: ClusterSubscription, keys: list[str], limit_s: float = 10) -> None:
    """Receive batches until every one of ``keys`` was heard expiring."""
    missing = set(keys)
    with trio.fail_after(limit_s):
        while missing:
            missing -= {key.decode() for _, key in await subscription.receive_batch()}


def test_the_fixture_is_three_masters_with_a_replica_each_serving_every_slot(
    redis_cluster: RedisClusterNodes,
) -> None:
    topology = redis_cluster.topology()
    masters = [node for node in topology if node.master]
    assert len(masters) == 3 and len(topology) == 6
    assert sum(last - first + 1 for node in masters for first, last in node.slots) == 16384
    assert len(redis_cluster.masters()) == 3


async def test_hears_the_expiries_on_every_master(redis_cluster: RedisClusterNodes) -> None:
    address = RedisAddress.from_url(redis_cluster.url)
    async with open_subscription(address, CHANNEL) as subscription:
        assert isinstance(subscription, ClusterSubscription)
        masters = sorted(address_of(node) for node in redis_cluster.masters())
        # Replicas too: they publish nothing until promoted, and then at once.
        assert subscription.nodes == sorted(address_of(node) for node in redis_cluster.nodes)
        keys = [f"exp:{i}" for i in range(300)]
        by_master = await set_expiring(redis_cluster, keys)
        assert sorted(by_master) == [port for _, port in masters], "every master holds some"
        await hear(subscription, keys)


async def test_follows_a_failover_without_reopening(redis_cluster: RedisClusterNodes) -> None:
    address = RedisAddress.from_url(redis_cluster.url)
    seed = redis_cluster.nodes[0]
    assert seed in redis_cluster.masters(), "redis-cli makes the first node a master"
    async with open_subscription(address, CHANNEL, refresh_s=0.5) as subscription:
        assert isinstance(subscription, ClusterSubscription)
        # Killing the seed also shows a refresh asks the other known masters.
        slots_of_seed = next(n for n in redis_cluster.topology() if n.port == seed.port).slots
        redis_cluster.kill(seed)
        await trio.to_thread.run_sync(redis_cluster.wait_failover)
        promoted = redis_cluster.master_of_slot(slots_of_seed[0][0])
        assert promoted is not seed

        masters = sorted(address_of(node) for node in redis_cluster.masters())
        assert address_of(promoted) in masters and address_of(seed) not in masters
        assert sorted(await cluster_masters(address, masters)) == masters

        async def subscribed_on_the_live_nodes() -> bool:
            return subscription.nodes == sorted(address_of(n) for n in redis_cluster.running())

        await eventually(subscribed_on_the_live_nodes)
        keys = [f"after:{i}" for i in range(300)]
        by_master = await set_expiring(redis_cluster, keys)
        assert by_master[promoted.port], "some keys live on the promoted replica"
        await hear(subscription, keys)


def test_cluster_urls_name_a_seed_node() -> None:
    plain = RedisAddress.from_url("redis+cluster://127.0.0.1:7000/0")
    assert plain.cluster and not plain.tls and (plain.host, plain.port) == ("127.0.0.1", 7000)
    secure = RedisAddress.from_url("rediss+cluster://u:pw@redis:6380?ssl_ca_certs=/tls/ca.crt")
    assert secure.cluster and secure.tls and secure.ca_file == "/tls/ca.crt"
    assert (secure.username, secure.password) == ("u", "pw")
    assert not RedisAddress.from_url("rediss://redis:6380").cluster
    assert not secure.at(("10.0.0.2", 6379)).cluster, "a node of the cluster is one server"


def test_serving_masters_keeps_suspected_masters_and_drops_failed_ones() -> None:
    nodes = "\n".join(
        [
            "a1 10.0.0.1:6379@16379,redis-0.redis master - 0 1 1 connected 0-5460",
            "a2 10.0.0.2:6379@16379 master,fail? - 0 1 2 connected 5461-10922",
            "a3 10.0.0.3:6379@16379 master,fail - 0 1 3 disconnected",
            "a4 10.0.0.4:6379@16379,,shard-id=ab master - 0 1 4 connected 10923-16383",
            "a5 10.0.0.5:6379@16379 slave a1 0 1 1 connected",
            "a6 10.0.0.6:6379@16379 master - 0 1 5 connected [42->-a1]",
            "a7 :6379@16379 myself,master - 0 1 6 connected 42",
        ]
    )
    assert serving_masters(nodes, ("seed", 6379)) == [
        ("redis-0.redis", 6379),
        ("10.0.0.2", 6379),
        ("10.0.0.4", 6379),
        ("seed", 6379),
    ]
    with_replicas = serving_masters(nodes, ("seed", 6379), replicas=True)
    assert with_replicas[-1] == ("10.0.0.5", 6379) and len(with_replicas) == 5
