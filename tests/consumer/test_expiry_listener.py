"""The expiry listener against a real Redis: what it passes on, and resubscribing."""

import trio

from consumer.expiry_listener import run_expiry_listener
from consumer.readiness import Readiness
from dev.local_system import RedisServer
from shared.patterns import KeyPatterns
from shared.redis.pubsub import RedisAddress
from tests.helpers import bridged_redis, eventually

PATTERNS = KeyPatterns(["gen-key:*", "session:*"])


async def collect(
    receive: trio.MemoryReceiveChannel[list[tuple[str, str]]], into: list[str]
) -> None:
    async for batch in receive:
        assert batch, "the listener never sends an empty batch"
        assert {event for event, _ in batch} == {"expired"}
        into.extend(key for _, key in batch)


async def start_listener(
    nursery: trio.Nursery, redis_server: RedisServer, heard: list[str]
) -> Readiness:
    """Start a listener on ``redis_server`` whose batches land in ``heard``; once subscribed."""
    readiness = Readiness()
    send, receive = trio.open_memory_channel[list[tuple[str, str]]](100)
    nursery.start_soon(collect, receive, heard)
    address = RedisAddress.from_url(redis_server.url)
    await nursery.start(
        run_expiry_listener, address, "__keyevent@0__:expired", PATTERNS, send, readiness
    )
    return readiness


async def test_passes_on_every_expired_key_matching_the_patterns_and_nothing_else(
    redis_server: RedisServer,
) -> None:
    heard: list[str] = []
    async with bridged_redis(redis_server.url) as redis, trio.open_nursery() as nursery:
        readiness = await start_listener(nursery, redis_server, heard)
        assert readiness.subscribed
        commands = []
        for i in range(500):
            commands += [
                ("SET", f"gen-key:{i}", "x", "PX", 20),
                ("SET", f"dedup:gen-key:{i}", "x", "PX", 20),
                ("SET", f"other:{i}", "x", "PX", 20),
                ("SET", f"session:{i}", "x", "PX", 20),
            ]
        long_name = "gen-key:" + "7" * 5000
        commands.append(("SET", long_name, "x", "PX", 20))
        commands.append(("SET", b"gen-key:\xff", "x", "PX", 20))
        await redis.pipeline(commands)

        async def all_heard() -> bool:
            # Touching keys expires them sooner; read as Redis sends it (a name that is not
            # UTF-8 is among them, which redis-py's decoding refuses).
            await redis.commands([("SCAN", 0, "COUNT", 10_000)])
            return len(heard) >= 1001

        await eventually(all_heard)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    expected = [f"gen-key:{i}" for i in range(500)] + [f"session:{i}" for i in range(500)]
    assert sorted(heard) == sorted([*expected, long_name])


async def test_resubscribes_after_redis_drops_the_connection(redis_server: RedisServer) -> None:
    heard: list[str] = []
    async with bridged_redis(redis_server.url) as redis, trio.open_nursery() as nursery:
        readiness = await start_listener(nursery, redis_server, heard)
        assert await redis.call("CLIENT", "KILL", "TYPE", "pubsub") == 1

        async def subscribed_again() -> bool:
            return (
                readiness.subscribed
                and (await redis.call("PUBSUB", "NUMSUB", "__keyevent@0__:expired"))[1] == 1
            )

        await eventually(subscribed_again)
        await redis.call("SET", "gen-key:1", "x", "PX", 10)

        async def heard_it() -> bool:
            await redis.call("EXISTS", "gen-key:1")
            return heard == ["gen-key:1"]

        await eventually(heard_it)
        nursery.cancel_scope.cancel()


async def test_waits_for_redis_that_is_not_up_yet(tmp_path: object) -> None:
    from pathlib import Path

    server = RedisServer(Path(str(tmp_path)))
    readiness = Readiness()
    address = RedisAddress.from_url(server.url)
    async with trio.open_nursery() as nursery:
        send, _receive = trio.open_memory_channel[list[tuple[str, str]]](10)
        nursery.start_soon(
            lambda: run_expiry_listener(
                address, "__keyevent@0__:expired", PATTERNS, send, readiness
            )
        )
        await trio.sleep(0.3)
        assert not readiness.subscribed
        server.start()
        try:

            async def subscribed() -> bool:
                return readiness.subscribed

            await eventually(subscribed)
        finally:
            nursery.cancel_scope.cancel()
            server.stop()
