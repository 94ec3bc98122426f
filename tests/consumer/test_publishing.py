"""Dedup + publisher and pull worker against real Redis and NATS JetStream."""

import time

import trio

from consumer.dedup_publisher import run_dedup_publisher, take_waiting
from consumer.pull_worker import run_pull_worker
from consumer.readiness import Readiness
from shared import names, scripts
from shared.local_system import NatsServer, RedisServer
from tests.helpers import add_pending, bridged, eventually, start_test_record


def test_take_waiting_merges_queued_batches_up_to_the_limit() -> None:
    send, receive = trio.open_memory_channel[list[str]](10)
    for batch in (["b"], ["c", "d"], ["e"]):
        send.send_nowait(batch)
    assert take_waiting(["a"], receive, limit=3) == ["a", "b", "c", "d"]
    assert take_waiting([], receive, limit=10) == ["e"]


async def test_publishers_hearing_the_same_keys_publish_each_once(
    redis_server: RedisServer, nats_server: NatsServer
) -> None:
    keys = [f"gen-key:{i}" for i in range(300)]
    async with bridged(redis_server.url, nats_server.url) as (redis, jetstream):
        await start_test_record(redis)
        await add_pending(redis, keys)
        async with trio.open_nursery() as nursery:
            senders = []
            for _ in range(3):
                send, receive = trio.open_memory_channel[list[str]](10)
                senders.append(send)
                await nursery.start(run_dedup_publisher, redis, jetstream, receive, 30_000, 100)
            for send in senders:
                async with send:
                    for start in range(0, 300, 50):
                        await send.send(keys[start : start + 50])
        state = await jetstream.consumer_state()
        assert state["num_pending"] == 300
        assert await redis.call("ZCARD", names.TEST_INFLIGHT) == 300
        assert await redis.call("ZCARD", names.TEST_PENDING) == 0


async def test_pull_workers_count_every_key_once_despite_duplicates_and_poison(
    redis_server: RedisServer, nats_server: NatsServer
) -> None:
    keys = [f"gen-key:{i}" for i in range(200)]
    deadline = str(int(time.time() * 1000))
    async with bridged(redis_server.url, nats_server.url) as (redis, jetstream):
        await start_test_record(redis)
        items = [
            (key, {"Nats-Msg-Id": f"t-test:{key}", "Test-Id": "t-test", "Key-Deadline": deadline})
            for key in keys
        ]
        # A second copy of some keys under other message ids: JetStream keeps them, so the
        # counting step must be what refuses to count them twice.
        copies = [
            (key, {"Nats-Msg-Id": f"copy:{key}", "Test-Id": "t-test", "Key-Deadline": deadline})
            for key in keys[:20]
        ]
        poison = [("not a key", {"Nats-Msg-Id": "poison", "Test-Id": "t-test"})]
        assert all(await jetstream.publish_batch(items + copies + poison))
        stop = trio.Event()
        readiness = Readiness()
        async with trio.open_nursery() as nursery:
            for consumer_id in ("c-1", "c-2"):
                await nursery.start(
                    run_pull_worker, redis, jetstream, consumer_id, readiness, stop, 64
                )

            async def all_settled() -> bool:
                state = await jetstream.consumer_state()
                return state["num_pending"] == 0 and state["num_ack_pending"] == 0

            await eventually(all_settled)
            stop.set()
        assert await redis.call("GET", names.METRICS_CONSUMED) == "200"
        assert await redis.call("HLEN", names.TEST_CONSUMED) == 200
        assert await redis.call("GET", names.METRICS_DUPLICATES) == "20"
        assert await redis.call("GET", names.METRICS_DEAD_LETTERS) == "1"
        per_consumer = await redis.call("MGET", "metrics:consumer:c-1", "metrics:consumer:c-2")
        assert sum(int(c or 0) for c in per_consumer) == 200


async def test_a_key_whose_publish_failed_is_given_back(
    redis_server: RedisServer, nats_server: NatsServer
) -> None:
    async with bridged(redis_server.url, nats_server.url) as (redis, jetstream):
        await start_test_record(redis)
        deadline = await add_pending(redis, ["gen-key:1"])
        nats_server.stop()  # every publish fails now
        send, receive = trio.open_memory_channel[list[str]](10)
        async with trio.open_nursery() as nursery:
            await nursery.start(run_dedup_publisher, redis, jetstream, receive, 60_000, 100)
            async with send:
                await send.send(["gen-key:1"])
        # Its lease was ended at once, so any sweeper takes it now rather than in 60 s.
        score = await redis.call("ZSCORE", names.TEST_INFLIGHT, f"gen-key:1|{deadline}")
        assert float(score) == 0
        assert await redis.script(scripts.RELEASE, (names.TEST_INFLIGHT,), []) == 0
