"""The function library producers call, against a real Redis 7."""

import pytest
import redis
import trio

from dev.local_system import RedisServer
from shared import names, scripts
from shared.bridge import RedisError
from shared.registration import Registry, ensure_library, library_version, register_many_command
from tests.helpers import bridged_redis


async def test_many_processes_loading_the_library_at_once_is_safe(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis_io:
        assert await library_version(redis_io) is None
        versions: list[int] = []

        async def load() -> None:
            versions.append(await ensure_library(redis_io))

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(load)
        assert versions == [scripts.FUNCTION_LIBRARY_VERSION] * 8
        libraries = await redis_io.call("FUNCTION", "LIST")
        assert len(libraries) == 1


async def test_an_older_library_is_replaced_and_a_newer_one_kept(
    redis_server: RedisServer,
) -> None:
    current = scripts.FUNCTION_LIBRARY_VERSION
    async with bridged_redis(redis_server.url) as redis_io:
        older = scripts.FUNCTION_LIBRARY.replace(f"VERSION = {current}", "VERSION = 0", 1)
        await redis_io.call("FUNCTION", "LOAD", older)
        assert await library_version(redis_io) == 0
        assert await ensure_library(redis_io) == current
        assert await library_version(redis_io) == current
        newer = scripts.FUNCTION_LIBRARY.replace(f"VERSION = {current}", "VERSION = 99", 1)
        await redis_io.call("FUNCTION", "LOAD", "REPLACE", newer)
        assert await ensure_library(redis_io) == 99


def test_any_language_registers_with_plain_fcall(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.function_load(scripts.FUNCTION_LIBRARY)
    deadline = client.fcall("expiry_register", 2, "lease:7", "expiry:due", "holder-3", 5000)
    assert client.get("lease:7") == "holder-3"
    assert 4000 < client.pttl("lease:7") <= 5000
    assert client.zscore("expiry:due", "lease:7") == deadline
    many = client.fcall("expiry_register_many", 3, "a:1", "a:2", "expiry:due", 9000, "x", "y")
    assert client.mget("a:1", "a:2") == ["x", "y"]
    assert client.zscore("expiry:due", "a:2") == many


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((2, "lease:7", "expiry:due", "v", "soon"), "ttl_ms must be a positive whole number"),
        ((2, "lease:7", "expiry:due", "v", 0), "ttl_ms must be a positive whole number"),
        ((2, "lease:7", "somewhere", "v", 100), "the registry key must be expiry:due"),
        ((2, "dedup:x", "expiry:due", "v", 100), "belong to the pipeline"),
        ((1, "lease:7", "v", 100), "usage: FCALL expiry_register 2"),
    ],
)
def test_bad_registrations_are_refused_naming_what_is_wrong_and_change_nothing(
    redis_server: RedisServer, args: tuple[object, ...], message: str
) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.function_load(scripts.FUNCTION_LIBRARY, replace=True)
    with pytest.raises(redis.ResponseError, match=message):
        client.fcall("expiry_register", *args)
    assert client.exists("lease:7", "dedup:x") == 0
    assert client.zcard(names.EXPIRY_DUE) == 0


async def test_the_trio_helper_reloads_a_library_redis_lost(redis_server: RedisServer) -> None:
    async with bridged_redis(redis_server.url) as redis_io:
        registry = Registry(redis_io)
        # Never loaded (or lost with a restart without persistence): the helper loads it.
        deadline = await registry.register_many([("job:1", "a"), ("job:2", "b")], 60_000)
        assert await redis_io.call("ZSCORE", names.EXPIRY_DUE, "job:2") == deadline
        await redis_io.call("FUNCTION", "FLUSH")
        await registry.register("job:3", "c", 60_000)
        assert await redis_io.call("GET", "job:3") == "c"
        with pytest.raises(ValueError):
            await registry.register_many([], 1000)
        with pytest.raises(RedisError, match="ttl_ms"):
            await redis_io.call(*register_many_command([("job:4", "d")], 0))
