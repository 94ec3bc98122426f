"""Redis for trio code: redis-py's asyncio client behind trio-callable methods (one crossing
per call), and on one server the hot path's scripts straight from trio
(``shared.redis.script_lines``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.bridge.loop import crossing
from shared.names import SINGLE_SERVER, KeyLayout, cluster_layout
from shared.redis.address import RedisAddress
from shared.redis.script_lines import ScriptCall, ScriptLines

Command = Sequence[str | int | float | bytes]

__all__ = ["Command", "RedisAuthenticationError", "RedisError", "RedisGateway", "ScriptCall"]


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``)."""
    return RedisAddress.from_url(url).cluster


class RedisGateway:
    """Commands, pipelines and Lua scripts on one Redis or one Redis Cluster, for trio code.

    Replies are decoded to ``str``. Each method crosses into asyncio once, so batch work into
    one pipeline or one script call. ``layout`` says where the pipeline's state lives: on a
    cluster, every script's keys belong to one slot group, and a pipeline may mix groups
    (redis-py sends each command to the master of its slot).
    """

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        layout: KeyLayout,
        lines: ScriptLines | None = None,
    ) -> None:
        self._client = client
        self.layout = layout
        self._scripts: dict[str, AsyncScript] = {}
        #: Scripts on one server run from trio directly (``shared.redis.script_lines``), not
        #: through asyncio.
        self._lines = lines

    @classmethod
    async def connect(cls, url: str) -> RedisGateway:
        """A gateway for ``url``; connections are opened lazily and re-opened after failures."""
        address = RedisAddress.from_url(url)
        if address.cluster:
            cluster = await crossing(_make_cluster_client)(address.client_url)
            return cls(cluster, cluster_layout())
        client = await crossing(_make_client)(address.client_url)
        return cls(client, SINGLE_SERVER, ScriptLines(address) if address.native else None)

    async def call(self, *command: str | int | float | bytes) -> Any:
        """Run one command and return its reply."""
        return await crossing(self._client.execute_command)(*command)

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """Run ``commands`` in one round trip (no transaction); return their replies in order."""
        return await crossing(_run_pipeline)(self._client, commands)

    async def commands(self, commands: Sequence[Command]) -> list[Any]:
        """Run ``commands`` in one round trip, as ``pipeline``, for commands whose replies
        redis-py leaves as Redis sends them (lists of strings, integers): on one server
        they go straight from trio."""
        if self._lines is not None:
            return await self._lines.commands(commands)
        return await self.pipeline(commands)

    def _script(self, source: str) -> AsyncScript:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._client.register_script(source)
        return script

    async def script(self, source: str, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Run the Lua ``source`` (cached by SHA on the server) with ``keys`` and ``args``."""
        if self._lines is not None:
            return (await self._lines.scripts(source, [(keys, args)]))[0]
        return await crossing(_run_script)(self._script(source), keys, args)

    async def scripts(self, source: str, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run the Lua ``source`` once per ``(keys, args)`` in one round trip; the replies.

        What a slot group's work becomes on a cluster: one script call per group touched.
        """
        if self._lines is not None:
            return await self._lines.scripts(source, calls)
        if len(calls) == 1:
            return [await self.script(source, *calls[0])]
        return await crossing(_run_scripts)(self._client, self._script(source), calls)

    async def config_get(self, name: str) -> str:
        """The value of the setting ``name`` ('' when unknown); on a cluster, one node's."""
        reply = await crossing(self._client.config_get)(name)
        return str(reply.get(name, "")) if isinstance(reply, dict) else ""

    async def function_load(self, code: str) -> None:
        """``FUNCTION LOAD REPLACE`` the library ``code``: on every master of a cluster."""
        await crossing(self._client.function_load)(code, replace=True)

    async def unlink_matching(self, pattern: str, batch: int = 1000) -> int:
        """Delete every key matching ``pattern`` with SCAN + UNLINK (never KEYS); return count."""
        return await crossing(_unlink_matching)(self._client, pattern, batch)

    async def unregister_matching(self, zset: str, pattern: str, batch: int = 1000) -> int:
        """Remove the members of ``zset`` matching ``pattern`` (ZSCAN + ZREM); return count."""
        return await crossing(_zrem_matching)(self._client, zset, pattern, batch)

    async def aclose(self) -> None:
        """Close every connection."""
        if self._lines is not None:
            await self._lines.aclose()
        await crossing(self._client.aclose)()


def _client_options(retries: int) -> dict[str, Any]:
    # Every command and script of this system is safe to run twice (claims, counts and
    # generator writes are idempotent), so a dropped connection is retried, not reported.
    return {
        "decode_responses": True,
        "socket_connect_timeout": 5,
        "socket_timeout": 10,
        "health_check_interval": 15,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


async def _make_client(url: str) -> aioredis.Redis:
    return aioredis.from_url(url, **_client_options(retries=4))


async def _make_cluster_client(url: str) -> RedisCluster:
    # More retries than one server: redis-py follows MOVED/ASK and re-reads the topology after
    # a failover by itself, which takes a few of them.
    return RedisCluster.from_url(url, **_client_options(retries=6))


async def _run_scripts(
    client: aioredis.Redis | RedisCluster,
    script: AsyncScript,
    calls: Sequence[ScriptCall],
) -> list[Any]:
    for attempt in range(2):
        try:
            async with client.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                return list(await pipe.execute())
        except NoScriptError:
            if attempt:
                raise
            # A node that has not run it yet (new, restarted, failed over): load it everywhere.
            await client.script_load(script.script)
    raise AssertionError("unreachable")


async def _run_pipeline(
    client: aioredis.Redis | RedisCluster, commands: Sequence[Command]
) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute()


async def _run_script(script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
    return await script(keys=list(keys), args=list(args))


async def _unlink_matching(client: aioredis.Redis | RedisCluster, pattern: str, batch: int) -> int:
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


async def _zrem_matching(
    client: aioredis.Redis | RedisCluster, zset: str, pattern: str, batch: int
) -> int:
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
