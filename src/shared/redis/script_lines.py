"""Lua script calls on one Redis server straight from trio: the pipeline's hot path.

Every key the pipeline handles costs a few script calls (claim, complete, mark queued), and
at one key per ms nearly each of them is a call of its own. Through redis-py and the bridge
one such call cost 200 to 260 µs of CPU (measured; asyncio alone under 100). Here a small
pool of connections speaks RESP itself, with hiredis (the parser redis-py uses) reading the
replies: the same ``EVALSHA`` commands, one round trip per batch, no crossing.

Failures mirror the redis-py client the gateway uses for everything else: a dropped
connection or a timeout is retried on a fresh connection with exponential back-off (every
script of this system is safe to run twice), then raised as redis-py's own exceptions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from hashlib import sha1
from typing import Any

import trio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.redis.address import RedisAddress
from shared.redis.resp import RespConnection, errors_inside

#: One call of a script: its KEYS and its ARGV.
ScriptCall = tuple[Sequence[str], Sequence[str | int]]

CONNECT_TIMEOUT_S = 5.0
#: A reply that takes longer than this counts as a failure (redis-py's ``socket_timeout``).
REPLY_TIMEOUT_S = 10.0
RETRIES = 4
_LINE_FAILURES = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    RedisConnectionError,
    trio.TooSlowError,
)


async def _open_line(address: RedisAddress) -> RespConnection:
    """A connection to ``address``, authenticated, its database selected."""
    with trio.fail_after(CONNECT_TIMEOUT_S):
        return await RespConnection.open(address, encoding="utf-8", select_db=True)


class ScriptLines:
    """A pool of trio-native connections to one Redis server, for ``EVALSHA`` batches."""

    def __init__(self, address: RedisAddress) -> None:
        self._address = address
        self._idle: list[RespConnection] = []
        self._closed = False
        self._shas: dict[str, str] = {}

    async def scripts(self, source: str, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run the Lua ``source`` once per ``(keys, args)`` in one round trip; the replies."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = sha1(source.encode()).hexdigest()
        commands = [["EVALSHA", sha, len(keys), *keys, *args] for keys, args in calls]
        replies = await self._run(commands)
        if any(isinstance(r, NoScriptError) for r in replies):
            # A server that has not run it yet (new, restarted): load it, then run them again.
            loaded = await self._run([["SCRIPT", "LOAD", source], *commands])
            replies = loaded[1:]
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def commands(self, commands: Sequence[Sequence[str | int | float | bytes]]) -> list[Any]:
        """Run ``commands`` in one round trip; their replies as RESP gives them.

        The first error reply is raised; errors inside an ``EXEC`` reply are left in place,
        as the exceptions redis-py gives (a transaction's caller decides what they mean).
        """
        replies = await self._run(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [
            errors_inside(reply) if command[0] == "EXEC" else reply
            for command, reply in zip(commands, replies, strict=True)
        ]

    async def _run(self, commands: Sequence[Sequence[str | int | float | bytes]]) -> list[Any]:
        for attempt in range(RETRIES + 1):
            line: RespConnection | None = None
            try:
                line = self._idle.pop() if self._idle else await _open_line(self._address)
                with trio.fail_after(REPLY_TIMEOUT_S):
                    replies = await line.run(commands)
            except _LINE_FAILURES as exc:
                if line is not None:
                    await line.aclose()
                if attempt == RETRIES:
                    if isinstance(exc, trio.TooSlowError):
                        raise RedisTimeoutError("Redis did not answer in time") from None
                    raise RedisConnectionError(f"cannot reach Redis: {exc}") from exc
                await trio.sleep(min(1.0, 0.05 * 2**attempt) * random.random())
                continue
            except BaseException:
                if line is not None:
                    with trio.CancelScope(shield=True):
                        await line.aclose()  # cancelled mid-reply: its stream is out of step
                raise
            if self._closed:
                await line.aclose()
            else:
                self._idle.append(line)
            return replies
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close every idle connection (those in use close when their call ends)."""
        self._closed = True
        while self._idle:
            await self._idle.pop().aclose()
