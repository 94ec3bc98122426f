"""The Lua scripts' contract, against a real Redis."""

import time

import trio

from consumer.publishing import claim, sweep
from consumer.pull_worker import count_batch
from shared import names, scripts
from shared.bridge import JetStreamMessage
from shared.local_system import RedisServer
from tests.helpers import add_pending, bridged_redis, start_test_record


def message(key: str, deadline: str, test_id: str = "t-test") -> JetStreamMessage:
    return JetStreamMessage(key=key, test_id=test_id, deadline=deadline, delivered=1, handle=None)


async def test_exactly_one_claim_wins_and_the_window_comes_from_the_test(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await start_test_record(redis, dedup_window=7000)
        deadline = await add_pending(redis, ["gen-key:1", "gen-key:2"])
        results = []

        async def one_claim() -> None:
            results.append(await claim(redis, ["gen-key:1", "gen-key:2", "gen-key:3"], 30000))

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(one_claim)
        won = [pair for _, pairs in results for pair in pairs]
        assert sorted(won) == [("gen-key:1", str(deadline)), ("gen-key:2", str(deadline))]
        assert {test_id for test_id, _ in results} == {"t-test"}
        assert 6000 < await redis.call("PTTL", "dedup:gen-key:1") <= 7000
        assert await redis.call("EXISTS", "dedup:gen-key:3") == 0
        assert await redis.call("ZCARD", names.TEST_PENDING) == 0
        inflight = await redis.call("ZRANGE", names.TEST_INFLIGHT, 0, -1)
        assert sorted(inflight) == [f"gen-key:1|{deadline}", f"gen-key:2|{deadline}"]


async def test_no_claim_without_a_current_test(redis_server: RedisServer) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await add_pending(redis, ["gen-key:1"])
        assert await claim(redis, ["gen-key:1"], 30000) == ("", [])


async def test_a_late_event_after_the_dedup_window_wins_nothing(redis_server: RedisServer) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await start_test_record(redis, dedup_window=50)
        await add_pending(redis, ["gen-key:1"])
        _, won = await claim(redis, ["gen-key:1"], 30000)
        assert len(won) == 1
        await trio.sleep(0.1)  # the dedup key is gone now
        assert await redis.call("EXISTS", "dedup:gen-key:1") == 0
        assert await claim(redis, ["gen-key:1"], 30000) == ("t-test", [])


async def test_sweep_claims_overdue_keys_once_and_leaves_live_ones(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await start_test_record(redis)
        old = int(time.time() * 1000) - 10_000
        await add_pending(redis, [f"gen-key:{i}" for i in range(100)], deadline_ms=old)
        await redis.call("SET", "gen-key:5", "alive", "PX", 60_000)  # not expired yet
        results = []

        async def one_sweep() -> None:
            results.append(await sweep(redis, lease_ms=30_000, grace_ms=1000, limit=1000))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(one_sweep)
        claimed = [key for _, pairs in results for key, _ in pairs]
        assert len(claimed) == len(set(claimed)) == 99
        assert "gen-key:5" not in claimed
        assert await redis.call("ZRANGE", names.TEST_PENDING, 0, -1) == ["gen-key:5"]
        assert int(await redis.call("ZSCORE", names.TEST_PENDING, "gen-key:5")) > old
        assert await redis.call("GET", names.METRICS_RECOVERED) == "99"
        # Nothing else is due, and leases have not run out.
        assert (await sweep(redis, 30_000, 1000, 1000))[1] == []


async def test_sweep_reclaims_keys_whose_lease_ran_out(redis_server: RedisServer) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await start_test_record(redis)
        deadline = await add_pending(redis, ["gen-key:1", "gen-key:2"])
        await claim(redis, ["gen-key:1", "gen-key:2"], lease_ms=50)
        await trio.sleep(0.1)
        _, again = await sweep(redis, lease_ms=30_000, grace_ms=1000, limit=10)
        assert sorted(again) == [("gen-key:1", str(deadline)), ("gen-key:2", str(deadline))]
        assert (await sweep(redis, 30_000, 1000, 10))[1] == []
        # Giving keys back makes them due at once.
        await redis.script(scripts.RELEASE, (names.TEST_INFLIGHT,), [f"gen-key:1|{deadline}"])
        assert (await sweep(redis, 30_000, 1000, 10))[1] == [("gen-key:1", str(deadline))]


async def test_counting_is_idempotent_and_per_consumer(redis_server: RedisServer) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await start_test_record(redis)
        deadline = await add_pending(redis, ["gen-key:1", "gen-key:2"])
        await claim(redis, ["gen-key:1", "gen-key:2"], 30_000)
        first = await count_batch(
            redis, "c-1", [message("gen-key:1", str(deadline)), message("gen-key:2", str(deadline))]
        )
        again = await count_batch(redis, "c-2", [message("gen-key:1", str(deadline))])
        stale = await count_batch(redis, "c-2", [message("gen-key:3", "1", test_id="t-old")])
        assert (first.counted, first.duplicates) == (2, 0)
        assert (again.counted, again.duplicates) == (0, 1)
        assert stale.stale == 1
        assert await redis.call("GET", names.METRICS_CONSUMED) == "2"
        assert await redis.call("GET", "metrics:consumer:c-1") == "2"
        assert await redis.call("GET", "metrics:consumer:c-2") is None
        assert await redis.call("SMEMBERS", names.METRICS_CONSUMERS) == {"c-1"}
        assert await redis.call("GET", names.METRICS_DUPLICATES) == "1"
        assert sorted(await redis.call("HKEYS", names.TEST_CONSUMED)) == ["gen-key:1", "gen-key:2"]
        assert await redis.call("ZCARD", names.TEST_INFLIGHT) == 0
