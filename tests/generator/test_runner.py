"""The test runner against a real Redis (no consumers): start/stop race, the drain's clock,
and the record the status shows while Redis is away."""

from __future__ import annotations

from collections.abc import Callable

import trio

from dev.local_system import RedisServer
from generator.runner import TestRunner
from generator.validation import TestConfig
from shared import names
from shared.bridge import RedisGateway
from shared.registration import ensure_library
from tests.helpers import bridged_redis


async def wait_for(check: Callable[[], bool], limit_s: float = 15) -> None:
    """Await until ``check()``; the runner's state changes on Redis replies, not on events."""
    with trio.fail_after(limit_s):
        while not check():  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_a_stop_during_the_start_stops_the_test_being_started(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis, trio.open_nursery() as nursery:
        # Leftovers of an earlier test make the start's clearing take a while.
        await redis.pipeline(
            [("SET", names.gen_key(n), "old", "PX", 60_000) for n in range(30_000)]
        )
        runner = TestRunner(redis, drain_timeout_s=2)
        await runner.recover_interrupted()
        started: list[str] = []

        async def start() -> None:
            started.append(await runner.start(TestConfig(num_keys=5000), nursery))

        nursery.start_soon(start)
        await wait_for(lambda: runner.record is not None)
        assert runner.record is not None and runner.record.state == "starting"
        assert not started, "the start was expected to still be clearing"
        assert runner.stop() is True
        stopping_id = runner.test_id
        await wait_for(lambda: bool(started))
        assert stopping_id == started[0]
        await wait_for(lambda: runner.record is not None and runner.record.saved)
        test = await redis.call("HGETALL", names.TEST_CURRENT)
        assert test["id"] == started[0]
        assert test["state"] == "stopped"
        assert test["generated_final"] == "0"


async def test_a_status_read_from_redis_is_overlaid_by_the_running_test(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis, trio.open_nursery() as nursery:
        runner = TestRunner(redis, drain_timeout_s=2)
        await runner.recover_interrupted()
        test_id = await runner.start(TestConfig(num_keys=100_000, key_delay=1), nursery)
        # What Redis would say after it lost the test: nothing.
        document = {"test_id": None, "state": "idle", "is_running": False, "config": None}
        runner.overlay(document)
        assert document["test_id"] == test_id
        assert document["is_running"] is True
        assert document["state"] == "generating"
        assert document["config"] == TestConfig(num_keys=100_000, key_delay=1).as_dict()
        runner.stop()
        await wait_for(lambda: runner.record is not None and runner.record.saved)
        nursery.cancel_scope.cancel()


async def test_the_last_tests_times_never_stand_for_the_next_one(
    redis_server: RedisServer,
) -> None:
    """Redis still holds the last test while the next one starts: its elapsed time must not
    pass for the new test's, or the page would drop the new test's samples (shorter, when it
    is stopped at once) as stale and stay on "starting"."""
    async with bridged_redis(redis_server.url) as redis, trio.open_nursery() as nursery:
        runner = TestRunner(redis, drain_timeout_s=2)
        await runner.recover_interrupted()
        await runner.start(TestConfig(num_keys=100_000, key_delay=1), nursery)
        assert runner.record is not None
        runner.record.state = "starting"  # as it is while Redis is being cleared
        document = {"test_id": "t-last", "state": "finished", "elapsed_s": 42.0}
        runner.overlay(document)
        assert document["test_id"] == runner.test_id and document["state"] == "starting"
        assert document["elapsed_s"] == 0.0
        runner.record.state = "generating"
        document = {"test_id": "t-last", "state": "finished", "elapsed_s": 42.0}
        runner.overlay(document)
        assert 0.0 <= document["elapsed_s"] < 5.0
        runner.stop()
        await wait_for(lambda: runner.record is not None and runner.record.saved)
        nursery.cancel_scope.cancel()


async def fill_memory_but(redis: RedisGateway, spare_bytes: int) -> None:
    """Redis refuses writes (``noeviction``) once ``spare_bytes`` more are used."""
    used = int((await redis.call("INFO", "memory"))["used_memory"])
    await redis.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
    await redis.call("CONFIG", "SET", "maxmemory", used + spare_bytes)


async def keys_in_redis(redis: RedisGateway, up_to: int) -> tuple[int, int, int]:
    """The generated count, the keys written and the keys registered, as Redis has them."""
    generated, written, registered = await redis.pipeline(
        [
            ("GET", names.METRICS_GENERATED),
            ("EXISTS", *[names.gen_key(n) for n in range(up_to)]),
            ("ZCARD", names.EXPIRY_DUE),
        ]
    )
    return int(generated or 0), int(written), int(registered)


async def test_a_batch_redis_refuses_halfway_is_counted_whole_or_not_at_all(
    redis_server: RedisServer,
) -> None:
    """Redis reaches ``maxmemory`` in the middle of a batch (the keys fit, the count after
    them would not): the generated count still says exactly how many keys were written, also
    once the test gives up because Redis refuses for longer than the drain timeout."""
    async with bridged_redis(redis_server.url) as redis, trio.open_nursery() as nursery:
        runner = TestRunner(redis, drain_timeout_s=2)
        await runner.recover_interrupted()
        await ensure_library(redis)
        await fill_memory_but(redis, 300_000)  # a few batches of keys
        await runner.start(TestConfig(num_keys=20_000, key_ttl=600_000), nursery)
        await wait_for(lambda: runner.record is not None and runner.record.state == "failed")
        assert runner.record is not None
        assert "out of memory" in (runner.record.reason or ""), runner.record
        generated, written, registered = await keys_in_redis(redis, 20_000)
        assert 0 < generated < 20_000
        assert written == registered == generated
        await redis.call("CONFIG", "SET", "maxmemory", 0)  # so that the end can be saved
        await wait_for(lambda: runner.record is not None and runner.record.saved)
        nursery.cancel_scope.cancel()


async def test_a_test_stopped_while_redis_refuses_its_keys_counts_what_was_written(
    redis_server: RedisServer,
) -> None:
    """Stopped while Redis refuses a batch: the test's count, Redis's count and the keys
    written agree, and the verdict checks exactly those keys."""
    async with bridged_redis(redis_server.url) as redis, trio.open_nursery() as nursery:
        runner = TestRunner(redis, drain_timeout_s=30)
        await runner.recover_interrupted()
        await ensure_library(redis)
        await fill_memory_but(redis, 300_000)
        await runner.start(TestConfig(num_keys=20_000, key_ttl=600_000), nursery)
        await wait_for(lambda: runner.outage.problem is not None)
        runner.stop()
        await redis.call("CONFIG", "SET", "maxmemory", 0)
        await wait_for(lambda: runner.record is not None and runner.record.state == "draining")
        runner.stop()  # no consumers: end the wait for them
        await wait_for(lambda: runner.record is not None and runner.record.saved)
        assert runner.record is not None and runner.record.state == "stopped", runner.record
        generated, written, registered = await keys_in_redis(redis, 20_000)
        assert 0 < generated < 20_000
        assert written == registered == generated
        test = await redis.call("HGETALL", names.TEST_CURRENT)
        assert int(test["generated_final"]) == generated
        assert runner.record.verdict is not None
        assert runner.record.verdict["expected"] == generated, runner.record.verdict
        nursery.cancel_scope.cancel()
