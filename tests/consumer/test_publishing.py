"""Dedup + publisher and pull workers against real Redis and NATS JetStream."""

import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from consumer.claim_store import Claimed, KeyEvent, claim
from consumer.dedup_publisher import run_dedup_publisher, take_waiting
from consumer.handler import ExpiredKey, Handler
from consumer.publishing import QUEUED_LEASE_MS, message_of, publish_claimed
from consumer.pull_worker import run_pull_worker
from consumer.readiness import Readiness
from consumer.worker_context import WorkerContext
from dev.local_system import NatsServer, RedisServer
from generator.handler import count
from shared import names, scripts
from shared.bridge import RedisGateway
from shared.lease import Lease
from shared.nats import JetStream
from tests.helpers import add_due, bridged, eventually, expired, start_test_record


def test_take_waiting_merges_queued_batches_up_to_the_limit() -> None:
    send, receive = trio.open_memory_channel[list[KeyEvent]](10)
    for batch in ([expired("b")], [expired("c"), expired("d")], [expired("e")]):
        send.send_nowait(batch)
    assert take_waiting([expired("a")], receive, limit=3) == [expired(k) for k in "abcd"]
    assert take_waiting([], receive, limit=10) == [expired("e")]


def context(
    redis: RedisGateway,
    jetstream: JetStream,
    consumer_id: str,
    handler: Handler = count,
    concurrency: int = 64,
    timeout_s: float = 30,
) -> WorkerContext:
    return WorkerContext(
        redis=redis,
        jetstream=jetstream,
        consumer_id=consumer_id,
        handler=handler,
        limiter=trio.CapacityLimiter(concurrency),
        lease_ms=30_000,
        handler_timeout_s=timeout_s,
    )


async def run_workers(contexts: Sequence[WorkerContext], jetstream: JetStream) -> None:
    """Run a pull worker per context until the work queue is empty and settled."""
    stop = trio.Event()
    readiness = Readiness()
    async with trio.open_nursery() as nursery:
        for ctx in contexts:
            await nursery.start(run_pull_worker, ctx, readiness, stop, 64)

        async def all_settled() -> bool:
            state = await jetstream.consumer_state()
            return state["num_pending"] == 0 and state["num_ack_pending"] == 0

        await eventually(all_settled, limit_s=30)
        stop.set()


async def test_publishers_hearing_the_same_keys_publish_each_once(
    redis_server: RedisServer, nats_server: NatsServer
) -> None:
    keys = [f"gen-key:{i}" for i in range(300)]
    async with bridged(redis_server.url, nats_server.url) as (redis, jetstream):
        await start_test_record(redis)
        await add_due(redis, keys[:100])
        async with trio.open_nursery() as nursery:
            senders = []
            for _ in range(3):
                send, receive = trio.open_memory_channel[list[KeyEvent]](10)
                senders.append(send)
                await nursery.start(
                    run_dedup_publisher, redis, jetstream, receive, 30_000, 5000, 100
                )
            for send in senders:
                async with send:
                    for start in range(0, 300, 50):
                        await send.send([expired(k) for k in keys[start : start + 50]])
        state = await jetstream.consumer_state()
        assert state["num_pending"] == 300
        assert await redis.call("ZCARD", names.EXPIRY_LEASES) == 300
        assert await redis.call("ZCARD", names.EXPIRY_DUE) == 0
        # Stored by JetStream: a backlog in the queue does not make these leases run out.
        soonest = await redis.call("ZRANGE", names.EXPIRY_LEASES, 0, 0, "WITHSCORES")
        assert float(soonest[0][1]) > time.time() * 1000 + QUEUED_LEASE_MS - 60_000


@pytest.mark.parametrize("check_leases", [True, False])
async def test_pull_workers_count_every_claim_once_despite_copies_and_poison(
    redis_server: RedisServer, nats_server: NatsServer, check_leases: bool
) -> None:
    keys = [f"gen-key:{i}" for i in range(200)]
    async with bridged(redis_server.url, nats_server.url) as (redis, jetstream):
        await start_test_record(redis)
        await add_due(redis, keys)
        won = await claim(redis, keys, 30_000, 5000)
        items = [message_of(member, "") for member in won.members]
        # A second copy of some claims under other message ids (a republish): JetStream keeps
        # them, so the lease must be what refuses to handle them twice.
        copies = [message_of(member, "again") for member in won.members[:20]]
        poison = [("not a claim", {"Nats-Msg-Id": "poison"})]
        assert not any(await jetstream.publish_batch(items + copies + poison))
        workers = [context(redis, jetstream, "c-1"), context(redis, jetstream, "c-2")]
        for worker in workers:
            worker.check_leases = check_leases  # off: completing alone refuses the copies
        await run_workers(workers, jetstream)
        assert await redis.call("GET", names.METRICS_CONSUMED) == "200"
        assert await redis.call("HLEN", names.TEST_CONSUMED) == 200
        assert await redis.call("GET", names.METRICS_DUPLICATES) == "20"
        assert await redis.call("GET", names.METRICS_DEAD_LETTERS) == "1"
        per_consumer = await redis.call("MGET", "metrics:consumer:c-1", "metrics:consumer:c-2")
        assert sum(int(c or 0) for c in per_consumer) == 200
        assert await redis.call("ZCARD", names.EXPIRY_LEASES) == 0


async def test_a_handler_that_fails_twice_then_succeeds_is_called_three_times_and_counted_once(
    redis_server: RedisServer, nats_server: NatsServer
) -> None:
    calls: list[ExpiredKey] = []

    async def flaky(event: ExpiredKey) -> None:
        calls.append(event)
        if event.attempt < 3:
            raise RuntimeError(f"not yet ({event.attempt})")

    async with bridged(redis_server.url, nats_server.url) as (redis, jetstream):
        won = await claim(redis, ["order:1"], 30_000, 5000)
        assert not any(await jetstream.publish_batch([message_of(won.members[0], "")]))
        await run_workers([context(redis, jetstream, "c-1", flaky)], jetstream)
        assert [c.attempt for c in calls] == [1, 2, 3]
        assert {(c.key, c.deadline_ms, c.test_id) for c in calls} == {("order:1", None, None)}
        assert await redis.call("GET", names.METRICS_CONSUMED) == "1"
        assert await redis.call("GET", names.METRICS_DEAD_LETTERS) is None
        assert await redis.call("ZCARD", names.EXPIRY_LEASES) == 0


async def test_a_handler_that_always_fails_ends_in_exactly_one_dead_letter(
    redis_server: RedisServer, nats_server: NatsServer
) -> None:
    attempts: list[int] = []

    async def broken(event: ExpiredKey) -> None:
        attempts.append(event.attempt)
        raise ValueError("the audit service said no")

    async with bridged(redis_server.url, nats_server.url) as (redis, jetstream):
        await start_test_record(redis)
        await add_due(redis, ["gen-key:7"])
        won = await claim(redis, ["gen-key:7"], 30_000, 5000)
        assert not any(await jetstream.publish_batch([message_of(won.members[0], "")]))
        await run_workers([context(redis, jetstream, "c-1", broken)], jetstream)
        assert attempts == [1, 2, 3]
        assert await redis.call("GET", names.METRICS_DEAD_LETTERS) == "1"
        assert await redis.call("SMEMBERS", names.TEST_DEAD_LETTERS) == {"gen-key:7"}
        records = await redis.call("LRANGE", names.EXPIRY_DEAD_LETTERS, 0, -1)
        assert len(records) == 1
        assert "the audit service said no" in records[0] and '"attempts": 3' in records[0]
        assert await redis.call("GET", names.METRICS_CONSUMED) is None
        # The handler rejected it: no sweeper brings it back.
        assert await redis.call("ZCARD", names.EXPIRY_LEASES) == 0


async def test_handler_concurrency_is_bounded(
    redis_server: RedisServer, nats_server: NatsServer
) -> None:
    running = 0
    most = 0

    async def slow(event: ExpiredKey) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await trio.sleep(0.02)
        running -= 1

    async with bridged(redis_server.url, nats_server.url) as (redis, jetstream):
        won = await claim(redis, [f"job:{i}" for i in range(60)], 30_000, 5000)
        assert not any(await jetstream.publish_batch([message_of(m, "") for m in won.members]))
        ctx = context(redis, jetstream, "c-1", slow, concurrency=4)
        # Two workers in one process share one limiter.
        await run_workers([ctx, ctx], jetstream)
        assert most == 4
        assert await redis.call("GET", names.METRICS_CONSUMED) == "60"


async def test_a_claim_whose_publish_failed_is_given_back(
    redis_server: RedisServer, nats_server: NatsServer
) -> None:
    async with bridged(redis_server.url, nats_server.url) as (redis, jetstream):
        nats_server.stop()  # every publish fails now
        send, receive = trio.open_memory_channel[list[KeyEvent]](10)
        async with trio.open_nursery() as nursery:
            await nursery.start(run_dedup_publisher, redis, jetstream, receive, 60_000, 5000, 100)
            async with send:
                await send.send([expired("gen-key:1")])
        # Its lease was ended at once, so any sweeper takes it now rather than in 60 s.
        members = await redis.call("ZRANGE", names.EXPIRY_LEASES, 0, -1, "WITHSCORES")
        assert len(members) == 1 and float(members[0][1]) == 0
        assert await redis.script(scripts.RELEASE, (names.EXPIRY_LEASES,), []) == 0


def test_the_message_carries_the_claim_and_a_new_id_when_republished() -> None:
    member = Lease("42", "1700000000000", "t-1", "a|b").member
    key, headers = message_of(member, "")
    assert key == "a|b"
    assert headers == {"Nats-Msg-Id": "claim-42", "Expiry-Claim": "42|1700000000000|t-1"}
    assert message_of(member, "1700000000500")[1]["Nats-Msg-Id"] == "claim-42.1700000000500"
    assert Claimed([member]).generation == ""


async def test_a_full_queue_refuses_the_claims_with_jetstreams_reason_in_the_log(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """JetStream at ``max_memory_store``: the publisher says why it could not publish, and
    gives the claims back to the sweepers (published later, when the queue has room)."""
    nats = NatsServer(tmp_path, config="jetstream { max_memory_store: 256KB }").start()
    try:
        async with bridged(redis_server.url, nats.url) as (redis, jetstream):
            filler = [(f"{'x' * 1000}:{i}", {"Nats-Msg-Id": f"fill:{i}"}) for i in range(400)]
            assert any(await jetstream.publish_batch(filler)), "the store never filled"
            won = await claim(redis, ["order:1", "order:2"], 30_000, 5000)
            assert await publish_claimed(redis, jetstream, won) == 0
            assert "JetStream did not take 2 of 2 keys: insufficient resources" in caplog.text
            assert "giving 2 unpublished keys back to the sweepers" in caplog.text
            assert nats.process.running
    finally:
        nats.stop()
