"""The test runner against a real Redis (no consumers): start/stop race, the drain's clock,
and the record the status shows while Redis is away."""

from __future__ import annotations

from collections.abc import Callable

import trio

from dev.local_system import RedisServer
from generator.runner import TestRunner
from generator.validation import TestConfig
from shared import names
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
