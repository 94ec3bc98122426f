"""The scripts and registration on a real Redis Cluster: every call touches one slot group,
keys land where Redis puts them, and the sweeper's compare-and-claim holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trio.lowlevel

from consumer.claim_store import (
    claim,
    claim_keys,
    claim_overdue,
    hear,
    read_upcoming,
    scan_overdue,
)
from dev.local_system import RedisClusterNodes
from shared import names, scripts
from shared.bridge import RedisGateway
from shared.lease import key_of
from shared.registration import Registry, ensure_library
from tests.helpers import bridged_redis


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """One cluster for this module's tests (each uses keys of its own)."""
    cluster = RedisClusterNodes(Path(tmp_path_factory.mktemp("cluster"))).start()
    yield cluster
    cluster.stop()


def sync_client(cluster: RedisClusterNodes) -> redis.RedisCluster:
    return redis.RedisCluster.from_url(cluster.url.replace("+cluster", ""), decode_responses=True)


async def test_registration_claims_and_sweeps_on_a_cluster(
    redis_cluster: RedisClusterNodes,
) -> None:
    client = sync_client(redis_cluster)
    keys = [f"session:{i}" for i in range(300)]
    async with bridged_redis(redis_cluster.url) as gateway:
        layout = gateway.layout
        assert layout.cluster
        await ensure_library(gateway)
        # Keys spread over every master; the registry of each is its slot group's.
        deadline = await Registry(gateway).register_many([(k, "v") for k in keys], 60_000)
        for key in keys[:40]:
            assert client.cluster_keyslot(key) == names.key_slot(key)
            assert client.get(key) == "v"
            score = client.zscore(layout.group_of(key).name(names.EXPIRY_DUE), key)
            assert score is not None and abs(score - deadline) < 1000
        assert sum(client.zcard(name) for name in layout.every(names.EXPIRY_DUE)) == len(keys)

        # A key that still exists is never claimed, whatever its event says.
        assert (await claim(gateway, keys[:200], 30_000, 4000)).members == []
        # Claims once they have expired: one script per group, each key won once.
        client.delete(*keys[:200])
        for key in keys[:200]:
            client.zadd(layout.group_of(key).name(names.EXPIRY_DUE), {key: 1})
        won = await claim(gateway, keys[:200], 30_000, 4000)
        assert sorted(m.split("|", 3)[3] for m in won.members) == sorted(keys[:200])
        assert (await claim(gateway, keys[:200], 30_000, 4000)).members == []
        assert sum(client.zcard(name) for name in layout.every(names.EXPIRY_LEASES)) == 200

        # The rest are deleted before their deadline: the registry is the promise.
        client.delete(*keys[200:])
        for key in keys[200:]:
            client.zadd(layout.group_of(key).name(names.EXPIRY_DUE), {key: 1})
        due, stale = await scan_overdue(gateway, 0, 1000)
        assert sorted(due) == sorted(keys[200:]) and stale == []
        swept = await claim_overdue(gateway, due, 30_000, 0, 4000)
        assert len(swept.members) == 100
        dedup = layout.group_of(keys[250]).dedup(keys[250])
        assert client.pttl(dedup) > scripts.LEAST_CLAIM_RECORD_MS - 5000


async def test_a_sweep_does_not_claim_a_key_registered_again_after_its_ttl_was_read(
    redis_cluster: RedisClusterNodes,
) -> None:
    """The cluster's sweep reads a key's TTL, then claims in the group's script: a producer
    that re-registered the key in between (registry first, then the key) moved its deadline,
    and the script leaves it alone."""
    client = sync_client(redis_cluster)
    key = "job:{tenant-7}:42"
    async with bridged_redis(redis_cluster.url) as gateway:
        await ensure_library(gateway)
        group = gateway.layout.group_of(key)
        registry = group.name(names.EXPIRY_DUE)
        client.zadd(registry, {key: 1})  # registered long ago, gone since
        seen_ttl = client.pttl(key)
        assert seen_ttl == -2
        await Registry(gateway).register(key, "again", 60_000)  # the producer, meanwhile
        state = [
            *claim_keys(group),
            group.name(names.METRICS_RECOVERED),
            group.name(names.TEST_RECOVERED),
        ]
        args: list[str | int] = [30_000, 0, 4000, key, str(seen_ttl)]
        [claimed] = await gateway.scripts(scripts.SWEEP_CLAIM, [([*state, group.dedup(key)], args)])
        assert claimed == []
        assert client.zscore(registry, key) is not None  # still waiting for its new deadline
        assert not client.exists(group.dedup(key))
        await trio.lowlevel.checkpoint()


async def test_the_library_refuses_a_registry_of_no_group_on_a_cluster(
    redis_cluster: RedisClusterNodes,
) -> None:
    client = sync_client(redis_cluster)
    async with bridged_redis(redis_cluster.url) as gateway:
        await ensure_library(gateway)
    try:
        client.execute_command("FCALL", names.FN_REGISTER_DUE, 1, "expiry:{other}:due", 100, "k")
    except redis.ResponseError as exc:
        assert "registry key must be expiry:due" in str(exc)
    else:
        raise AssertionError("a registry outside the slot groups was accepted")
    assert client.zcard("expiry:{other}:due") == 0


async def test_deadlines_cancel_and_reschedule_on_a_cluster(
    redis_cluster: RedisClusterNodes,
) -> None:
    """The key and its group's registry live on different masters: each step reads the key
    first, then runs in the group."""
    client = sync_client(redis_cluster)
    keys = [f"session:{i}" for i in range(60)]
    async with bridged_redis(redis_cluster.url) as gateway:
        layout = gateway.layout
        await ensure_library(gateway)
        for key in keys:
            client.set(key, "v", px=60_000)
        await hear(gateway, [("expire", key) for key in keys], 30_000, 5000)
        for key in keys:
            score = client.zscore(layout.group_of(key).name(names.EXPIRY_DUE), key)
            assert score == client.pexpiretime(key)
        registry = Registry(gateway)
        assert await registry.cancel(keys[0]) is True
        assert client.exists(keys[0]) == 0
        assert client.zscore(layout.group_of(keys[0]).name(names.EXPIRY_DUE), keys[0]) is None
        assert await registry.cancel(keys[0]) is False
        moved = await registry.reschedule(keys[1], 120_000)
        assert moved == client.pexpiretime(keys[1])
        assert client.zscore(layout.group_of(keys[1]).name(names.EXPIRY_DUE), keys[1]) == moved
        assert await registry.reschedule(keys[0], 1000) is None
        # Persisted and deleted keys leave the registry when heard.
        client.persist(keys[2])
        client.delete(keys[3])
        await hear(gateway, [("persist", keys[2]), ("del", keys[3])], 30_000, 5000)
        for key in keys[2:4]:
            assert client.zscore(layout.group_of(key).name(names.EXPIRY_DUE), key) is None


async def test_due_keys_are_claimed_once_in_their_groups_on_a_cluster(
    redis_cluster: RedisClusterNodes,
) -> None:
    """The lead's ``due`` reads each key's deadline first (another master), then claims in the
    key's group; the registry is read group by group."""
    client = sync_client(redis_cluster)
    keys = [f"timer:{i}" for i in range(40)]
    async with bridged_redis(redis_cluster.url) as gateway:
        await ensure_library(gateway)
        registry = Registry(gateway)
        for key in keys[:20]:
            await registry.register(key, "v", 30)
        for key in keys[20:]:
            await registry.register(key, "v", 60_000)

        def registered(key: str) -> float | None:
            return client.zscore(gateway.layout.group_of(key).name(names.EXPIRY_DUE), key)

        later = [registered(key) for key in keys[20:]]
        pages = await read_upcoming(gateway, 1000, 120_000, 500)
        read = [key for page in pages for key, _ in page if key.startswith("timer:")]
        assert sorted(read) == sorted(keys)
        await trio.sleep(0.05)
        events = [(names.DUE_EVENT, key) for key in keys]
        won = await claim_due_twice(gateway, events)
        assert sorted(won) == sorted(keys[:20])
        # The others, ahead: not claimed, their registrations unchanged.
        assert [registered(key) for key in keys[20:]] == later


async def claim_due_twice(gateway: RedisGateway, events: list[tuple[str, str]]) -> list[str]:
    won: list[str] = []
    for _ in range(2):
        won += [key_of(m) for m in (await hear(gateway, events, 30_000, 5000)).members]
    return won
