"""Script calls straight from trio on one Redis server, against a real redis-server."""

import pytest
import trio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from dev.local_system import RedisServer
from shared.redis.pubsub import RedisAddress
from shared.redis.script_lines import ScriptLines
from tests.helpers import bridged_redis

NESTED = "return {KEYS[1], tonumber(ARGV[1]), {ARGV[2], 'x'}}"


async def test_replies_are_those_of_redis_py(redis_server: RedisServer) -> None:
    async with bridged_redis(redis_server.url) as redis:
        assert redis._lines is not None  # a plain redis:// server: scripts go straight
        ours = await redis.scripts(NESTED, [(["k:1"], [7, "é"]), (["k:2"], [8, "b"])])
        theirs = await redis.call("EVAL", NESTED, 1, "k:1", 7, "é")
    assert ours == [theirs, ["k:2", 8, ["b", "x"]]]


async def test_a_flushed_script_cache_is_loaded_again(redis_server: RedisServer) -> None:
    async with bridged_redis(redis_server.url) as redis:
        assert await redis.script("return 1", [], []) == 1
        await redis.call("SCRIPT", "FLUSH")
        assert await redis.scripts("return 1", [([], []), ([], [])]) == [1, 1]


async def test_a_script_error_is_raised_and_the_next_call_works(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        with pytest.raises(ResponseError):
            await redis.script("return redis.call('NOSUCHCOMMAND')", [], [])
        assert await redis.script("return 2", [], []) == 2


async def test_a_dropped_connection_is_retried_on_a_fresh_one(
    redis_server: RedisServer,
) -> None:
    lines = ScriptLines(RedisAddress.from_url(redis_server.url))
    assert await lines.scripts("return 1", [([], [])]) == [1]
    async with bridged_redis(redis_server.url) as redis:
        await redis.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert await lines.scripts("return 1", [([], [])]) == [1]
    await lines.aclose()


async def test_an_unreachable_server_raises_redis_py_s_connection_error(
    redis_server: RedisServer,
) -> None:
    lines = ScriptLines(RedisAddress.from_url(redis_server.url))
    redis_server.stop()
    with trio.fail_after(10), pytest.raises(RedisConnectionError):
        await lines.scripts("return 1", [([], [])])


async def test_the_url_s_database_is_selected(redis_server: RedisServer) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    async with bridged_redis(url) as redis:
        await redis.script("redis.call('SET', KEYS[1], 'here')", ["where"], [])
        assert await redis.call("GET", "where") == "here"
    async with bridged_redis(redis_server.url) as redis:
        assert await redis.call("GET", "where") is None
