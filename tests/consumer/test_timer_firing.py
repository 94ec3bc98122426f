"""The lead's timers: registered keys sent as ``due`` at their deadlines, against a real Redis."""

from __future__ import annotations

import trio

from consumer.claim_store import KeyEvent
from consumer.timers import PAGE, Timers, run_timers
from dev.local_system import RedisServer
from shared import names
from shared.bridge import RedisGateway
from shared.patterns import KeyPatterns
from shared.registration import Registry, ensure_library
from tests.helpers import add_due, bridged_redis

ALL = KeyPatterns(["*"])


async def redis_ms(redis: RedisGateway) -> int:
    seconds, micros = await redis.call("TIME")
    return int(seconds) * 1000 + int(micros) // 1000


async def sends_anything(redis: RedisGateway) -> bool:
    """Whether the timers, run for a few reads (0.3 s, a 100 ms lookahead), sent any key."""
    timers = Timers()
    send, receive = trio.open_memory_channel[list[KeyEvent]](64)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_timers, redis, timers, send, ALL, 100)
        await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    with trio.move_on_after(0) as idle:
        await receive.receive()
    return not idle.cancelled_caught


async def test_keys_are_sent_due_once_each_and_never_before_their_deadline(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await ensure_library(redis)
        registry = Registry(redis)
        timers = Timers()
        send, receive = trio.open_memory_channel[list[KeyEvent]](64)
        async with trio.open_nursery() as nursery:
            # Only this fleet's keys: another fleet sharing the Redis fires its own.
            nursery.start_soon(run_timers, redis, timers, send, KeyPatterns(["t:*"]), 100)
            deadlines = {
                f"t:{ttl}": await registry.register(f"t:{ttl}", "v", ttl) for ttl in (30, 60, 90)
            }
            await registry.register("t:later", "v", 60_000)
            await registry.register("other-fleet:1", "v", 30)
            sent: list[str] = []
            with trio.fail_after(10):
                while len(sent) < 3:
                    events = await receive.receive()
                    now = await redis_ms(redis)
                    for event, key in events:
                        assert event == names.DUE_EVENT
                        assert now >= deadlines[key], f"{key} sent before its deadline"
                    sent += [key for _, key in events]
            await trio.sleep(0.2)  # a few more reads: nothing is sent twice or early
            with trio.move_on_after(0):
                sent += [key for _, key in await receive.receive()]
            assert sorted(sent) == sorted(deadlines)
            nursery.cancel_scope.cancel()


async def test_a_deadline_reported_sooner_wakes_the_sleeping_task(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        timers = Timers()
        send, receive = trio.open_memory_channel[list[KeyEvent]](64)
        async with trio.open_nursery() as nursery:
            # With a minute's lookahead the registry is read every 30 s: only the report can
            # bring the key in time.
            nursery.start_soon(run_timers, redis, timers, send, ALL, 60_000)
            await trio.sleep(0.1)  # the first read is done: nothing registered
            timers.arm([("t:reported", 20)])
            with trio.fail_after(10):
                assert await receive.receive() == [(names.DUE_EVENT, "t:reported")]
            nursery.cancel_scope.cancel()


async def test_a_registration_whose_key_is_not_written_is_left_to_the_sweepers(
    redis_server: RedisServer,
) -> None:
    """On a cluster a producer registers first and writes next, and may register again when a
    reply was lost: firing the first registration would make the second a second timer."""
    async with bridged_redis(redis_server.url) as redis:
        await add_due(redis, ["t:unwritten"], await redis_ms(redis) + 30)
        assert not await sends_anything(redis)


async def test_a_burst_is_left_to_redis(redis_server: RedisServer) -> None:
    """A full page of due keys is a burst: Redis announces them itself, the sweepers follow."""
    async with bridged_redis(redis_server.url) as redis:
        await add_due(redis, [f"t:burst:{i}" for i in range(PAGE + 1)])
        assert not await sends_anything(redis)


async def test_each_key_fires_once_at_the_deadline_last_reported() -> None:
    timers = Timers()
    timers.active = True
    timers.arm([("a", 0), ("a", 0), ("b", 0), ("c", 50)])
    timers.arm([("c", 0)])  # moved earlier
    assert sorted(timers.take_due()) == ["a", "b", "c"]
    timers.arm([("d", 30), ("d", 10_000)])  # moved later
    await trio.sleep(0.05)
    assert timers.take_due() == []
    # A read answered after a send reports nothing new; a claim's report re-arms the key.
    timers.arm([("a", 1)], read=True)
    timers.arm([("b", 0)])
    await trio.sleep(0.01)
    assert timers.take_due() == ["b"]
    # Only the lead fires timers: what is reported elsewhere is dropped.
    timers.clear()
    timers.active = False
    timers.arm([("e", 0)])
    assert timers.take_due() == []
