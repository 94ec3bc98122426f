"""redis-py's asyncio client behind trio-callable methods, one crossing per call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.bridge.loop import crossing

Command = Sequence[str | int | float | bytes]

__all__ = ["Command", "RedisAuthenticationError", "RedisError", "RedisGateway"]


class RedisGateway:
    """Commands, pipelines and Lua scripts on one Redis, for trio code.

    Replies are decoded to ``str``. Each method crosses into asyncio once, so batch work into
    one pipeline or one script call.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._scripts: dict[str, AsyncScript] = {}

    @classmethod
    async def connect(cls, url: str) -> RedisGateway:
        """A gateway for ``url``; connections are opened lazily and re-opened after failures."""
        client = await crossing(_make_client)(url)
        return cls(client)

    async def call(self, *command: str | int | float | bytes) -> Any:
        """Run one command and return its reply."""
        return await crossing(self._client.execute_command)(*command)

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """Run ``commands`` in one round trip (no transaction); return their replies in order."""
        return await crossing(_run_pipeline)(self._client, commands)

    def _script(self, source: str) -> AsyncScript:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._client.register_script(source)
        return script

    async def script(self, source: str, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Run the Lua ``source`` (cached by SHA on the server) with ``keys`` and ``args``."""
        return await crossing(_run_script)(self._script(source), keys, args)

    async def script_then(
        self,
        source: str,
        keys: Sequence[str],
        args: Sequence[str | int],
        then: Callable[[], Awaitable[None]],
    ) -> Any:
        """Run a Lua script and, once it succeeded, the asyncio-side step ``then`` (such as
        ``JetStream.acker``): both in one crossing.

        Returns the script's reply and what ``then`` raised (None when it succeeded): a failed
        ``then`` must not make the caller run the script again.
        """
        return await crossing(_run_script_then)(self._script(source), keys, args, then)

    async def unlink_matching(self, pattern: str, batch: int = 1000) -> int:
        """Delete every key matching ``pattern`` with SCAN + UNLINK (never KEYS); return count."""
        return await crossing(_unlink_matching)(self._client, pattern, batch)

    async def unregister_matching(self, zset: str, pattern: str, batch: int = 1000) -> int:
        """Remove the members of ``zset`` matching ``pattern`` (ZSCAN + ZREM); return count."""
        return await crossing(_zrem_matching)(self._client, zset, pattern, batch)

    async def aclose(self) -> None:
        """Close every connection."""
        await crossing(self._client.aclose)()


async def _make_client(url: str) -> aioredis.Redis:
    # Every command and script of this system is safe to run twice (claims, counts and
    # generator writes are idempotent), so a dropped connection is retried, not reported.
    return aioredis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=15,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=4),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


async def _run_pipeline(client: aioredis.Redis, commands: Sequence[Command]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute()


async def _run_script(script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
    return await script(keys=list(keys), args=list(args))


async def _run_script_then(
    script: AsyncScript,
    keys: Sequence[str],
    args: Sequence[str | int],
    then: Callable[[], Awaitable[None]],
) -> Any:
    reply = await script(keys=list(keys), args=list(args))
    try:
        await then()
    except Exception as exc:
        return reply, exc
    return reply, None


async def _unlink_matching(client: aioredis.Redis, pattern: str, batch: int) -> int:
    removed = 0
    chunk: list[str] = []
    async for key in client.scan_iter(match=pattern, count=batch):
        chunk.append(key)
        if len(chunk) >= batch:
            removed += await client.unlink(*chunk)
            chunk.clear()
    if chunk:
        removed += await client.unlink(*chunk)
    return removed


async def _zrem_matching(client: aioredis.Redis, zset: str, pattern: str, batch: int) -> int:
    removed = 0
    chunk: list[str] = []
    async for member, _ in client.zscan_iter(zset, match=pattern, count=batch):
        chunk.append(member)
        if len(chunk) >= batch:
            removed += await client.zrem(zset, *chunk)
            chunk.clear()
    if chunk:
        removed += await client.zrem(zset, *chunk)
    return removed
